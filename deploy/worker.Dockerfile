# syntax=docker/dockerfile:1.7
# Slim image of the online engine: `demandstream worker` (and `insights serve`, `simulate`,
# `models`). Installs the package WITHOUT extras: no torch, no training code
# (tests/unit/test_deploy_images.py checks both). Build from the repository root:
#   docker build -f deploy/worker.Dockerfile -t demandstream/worker:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY insights ./insights
COPY tools ./tools
# `training/` is not copied, so the wheel cannot contain it even by accident.
RUN pip install . \
    && pip check \
    && if pip show torch >/dev/null 2>&1; then echo "torch must not be in the worker image" >&2; exit 1; fi

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin demandstream \
    && mkdir -p /models && chown demandstream /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEMANDSTREAM_MODEL_REGISTRY=/models \
    DEMANDSTREAM_HTTP_HOST=0.0.0.0 \
    DEMANDSTREAM_LOG_JSON=true
USER 10001
EXPOSE 9108 8050
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=3)"]
ENTRYPOINT ["demandstream"]
CMD ["worker"]
