# syntax=docker/dockerfile:1.7
# One-shot trainer: `demandstream train ... --registry /models`. Installs the `train` extra with
# the CPU build of torch (PyPI's default Linux wheel pulls several GB of CUDA libraries).
#   docker build -f deploy/trainer.Dockerfile -t demandstream/trainer:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, from the CPU index, pinned to the version the `train` extra names.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY training ./training
COPY insights ./insights
COPY tools ./tools
RUN pip install ".[train]" && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin demandstream \
    && mkdir -p /models && chown demandstream /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEMANDSTREAM_MODEL_REGISTRY=/models \
    DEMANDSTREAM_LOG_JSON=true
USER 10001
ENTRYPOINT ["demandstream"]
CMD ["train", "--help"]
