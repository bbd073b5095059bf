"""One typed settings object, read from the environment (prefix ``MODELOBS_``).

OpenTelemetry itself is configured by the standard ``OTEL_*`` variables, which the SDK
reads; only what OpenTelemetry has no variable for lives here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the services read from the environment, with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="MODELOBS_", extra="ignore", populate_by_name=True)

    # Where the trained model lives; trained on first start when missing.
    model_dir: Path = Path("var/model")
    model_name: str = "churn-classifier"

    # deployment.environment.name when OTEL_RESOURCE_ATTRIBUTES does not set it.
    environment: str = "dev"

    # Request limits of the model service.
    max_batch_size: int = Field(default=256, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Server spans and HTTP metrics: our middleware (telemetry/http_server.py), or the
    # FastAPI instrumentation itself, configured lean; the gateway's client spans and
    # http.client.request.duration: ours (telemetry/http_client.py) or the httpx
    # instrumentation's instrument_client. Same telemetry, ours costs less.
    http_instrumentation: Literal["modelobs", "library"] = "modelobs"

    # Raw feature values in prediction logs: off by default (they may be personal data).
    log_features: bool = False
    # While logs are exported over OTLP, each prediction's record (the one record logged per
    # request) goes there only, so it leaves the process once; true writes it to stdout too.
    # With OTLP logs off it always goes to stdout. Every other record goes to both.
    stdout_predictions: bool = False

    # Gateway → model service: one URL, or several replicas in MODELOBS_MODEL_URLS
    # (comma-separated; when set it replaces model_url). apps/replicas.py spreads over them.
    model_url: str = "http://127.0.0.1:8000"
    model_urls: str | None = None
    upstream_timeout_s: float = Field(default=2.0, gt=0)
    upstream_retries: int = Field(default=2, ge=0, le=5)
    # A replica that refused a connection is skipped this long (doubling while it refuses).
    upstream_skip_s: float = Field(default=0.5, gt=0)
    # API key of the gateway's routes and the model service's /feedback (the gateway sends
    # it on): x-api-key, compared in constant time.
    api_key: SecretStr | None = None
    # Origins allowed by CORS (a JSON list); none by default: CORS stays off.
    cors_origins: list[str] = Field(default_factory=list)

    # Slow clients (apps/slow_clients.py): a connection must send its request line and
    # headers within header_timeout_s (idle ones are closed), and a body within
    # body_timeout_s of its headers (else 408); keep-alive connections idle that long close.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: int = Field(default=5, ge=1)

    # Idempotency-Key answers the model service keeps (per process): a repeated key within
    # the window gets the first answer instead of a second prediction.
    idempotency_window_s: float = Field(default=300.0, gt=0)
    idempotency_max_entries: int = Field(default=10_000, ge=1)
    idempotency_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)

    # Run-time fault flags for drills (flags/): a flagd flag file, watched (polled every
    # flags_poll_ms) and created with every flag off when missing. Unset: every flag off.
    flags_file: Path | None = None
    flags_poll_ms: int = Field(default=500, ge=50)

    # The prediction store: a SQLite file path, or a postgresql:// URL shared by replicas.
    prediction_db: Path | str = Path("var/predictions.db")
    prediction_log_queue: int = Field(default=10_000, ge=1)
    prediction_log_batch: int = Field(default=1000, ge=1)
    # The most a SIGKILL loses: what was answered in the last interval (graceful stop: none).
    prediction_log_flush_interval_s: float = Field(default=0.1, gt=0, le=10)
    # Feedback or a look-up for a prediction id minted this recently, not yet in the shared
    # store (another replica's buffer), is retried until then; older unknown ids are a 404.
    feedback_wait_s: float = Field(default=2.0, ge=0, le=30)
    drift_window: int = Field(default=1000, ge=10)
    drift_window_seconds: float | None = None
    drift_min_window: int = Field(default=200, ge=10)
    drift_recompute_every: int = Field(default=100, ge=1)
    drift_interval_s: float = Field(default=10.0, gt=0)
    quality_window: int = Field(default=1000, ge=10)

    # The monitor (drift and quality over every replica's predictions, read from the store):
    # inside ``serve model`` (embedded), or a separate ``modelobs serve monitor`` (off here).
    monitor: Literal["embedded", "off"] = "embedded"
    monitor_poll_interval_s: float = Field(default=0.2, gt=0)
    monitor_batch_size: int = Field(default=1000, ge=1)

    # The collector's tail-sampling policy, read from the variables otel-collector/config.yaml
    # reads (no MODELOBS_ prefix: one value feeds both), so that exemplars name only traces
    # the collector keeps (telemetry/exemplars.py). The defaults are config.yaml's.
    tail_sampling_percent: float = Field(
        default=10.0, ge=0, le=100, validation_alias="TAIL_SAMPLING_PERCENT"
    )
    tail_sampling_latency_ms: int = Field(
        default=500, ge=0, validation_alias="TAIL_SAMPLING_LATENCY_MS"
    )
    tail_sampling_hash_salt: str = Field(
        default="modelobs", validation_alias="TAIL_SAMPLING_HASH_SALT"
    )

    @field_validator("prediction_db")
    @classmethod
    def _path_unless_url(cls, value: Path | str) -> Path | str:
        """A postgresql:// URL stays a string (a Path would fold its "//"); all else is a path."""
        if isinstance(value, str) and not value.startswith(("postgresql://", "postgres://")):
            return Path(value)
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
