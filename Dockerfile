# syntax=docker/dockerfile:1.7
# modelobs images. The default target, `service`, runs `modelobs serve model` and
# `modelobs serve gateway` (the command picks the role, see docker-compose.yml) and leaves
# the load generator out; the `loadgen` target is the same plus `modelobs load`.
#
#   docker build -t modelobs/service:dev .
#   docker run --rm -p 127.0.0.1:8000:8000 modelobs/service:dev serve model --host 0.0.0.0
#   docker build --target loadgen -t modelobs/loadgen:dev .

# ---------------------------------------------------------------- builder
# Resolves exactly what uv.lock pins (no network resolution) into /opt/venv.
FROM python:3.11.14-slim-trixie AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /src

# Dependencies first (cached layer while only the code changes). The project's
# optional `dev` extra (pytest, ruff) is not installed.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-install-project --no-editable

# Then the project itself, installed non-editable so /src is not needed at run time.
# (Checked without Docker: `uv sync --locked --no-editable` into a fresh venv, then
# `modelobs --help` with the source tree moved away.)
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-editable

# ---------------------------------------------------------------- server-env
# The server's environment: the same, without the load generator (client-side code the
# server never imports). Checked here: the apps still import without it.
FROM builder AS server-env
RUN loadgen="$(/opt/venv/bin/python -c 'import modelobs, pathlib; print(pathlib.Path(modelobs.__file__).parent / "loadgen")')" \
 && rm -r "$loadgen" \
 && /opt/venv/bin/python -c "import modelobs.apps.model_service, modelobs.apps.gateway, modelobs.cli"

# ---------------------------------------------------------------- runtime
FROM python:3.11.14-slim-trixie AS runtime

LABEL org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 modelobs \
 && useradd --system --uid 10001 --gid modelobs --home-dir /var/lib/modelobs \
            --create-home --shell /usr/sbin/nologin modelobs \
 # the fault-flag file's directory, shared by the services and the load generator in compose
 && install -d -o modelobs -g modelobs /var/lib/modelobs/flags

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELOBS_MODEL_DIR=/var/lib/modelobs/model \
    MODELOBS_PREDICTION_DB=/var/lib/modelobs/predictions.db

WORKDIR /var/lib/modelobs
USER modelobs:modelobs
ENTRYPOINT ["modelobs"]

# ---------------------------------------------------------------- loadgen
FROM runtime AS loadgen

LABEL org.opencontainers.image.title="modelobs load generator" \
      org.opencontainers.image.description="Sends scenario traffic to the modelobs gateway (modelobs load)"

COPY --from=builder /opt/venv /opt/venv

CMD ["load", "--url", "http://127.0.0.1:8080", "--duration", "0", "--quiet"]

# ---------------------------------------------------------------- service (default target)
FROM runtime AS service

LABEL org.opencontainers.image.title="modelobs service" \
      org.opencontainers.image.description="FastAPI scikit-learn model service and gateway with OpenTelemetry"

COPY --from=server-env /opt/venv /opt/venv

EXPOSE 8000 8080

# The port differs per role, so docker-compose defines the health checks; this
# default matches the default command (the model service on 8000).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["serve", "model", "--host", "0.0.0.0", "--port", "8000"]
