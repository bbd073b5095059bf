"""The test suites: unit and integration here, end-to-end in tests/e2e."""
