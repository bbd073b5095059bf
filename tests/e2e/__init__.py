"""End-to-end tests against the real collector, Jaeger, Prometheus, Alertmanager and log store."""
