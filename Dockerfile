# syntax=docker/dockerfile:1
# shadow: the sidecar proxy image. `docker build -t shadow .`
#
# builder: installs the runtime dependencies exactly as requirements.lock pins them (versions
#          and sha256 hashes, `--require-hashes`: nothing is resolved at build time), then
#          the package wheel without dependencies (no extras: no demo/test servers), into a
#          venv at /opt/shadow; `pip check` fails the build on a stale lock.
# final:   the same base image plus that venv only; runs as UID 10001 and writes
#          nothing outside /tmp, so it works with readOnlyRootFilesystem.
# Pinned by tag AND digest (the multi-architecture index of the tag). The digest was not
# checked against the registry from this (offline) workspace: it is the one public
# repositories pin for this tag. Verify/refresh with
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock ./
# The venv gets no pip/setuptools of its own: the base image's pip installs into it.
RUN python -m venv --without-pip /opt/shadow \
 && pip --python /opt/shadow/bin/python install --no-compile --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY shadow ./shadow
COPY normalizers ./normalizers
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip --python /opt/shadow/bin/python install --no-compile --no-deps /wheels/shadow_verify-*.whl \
 && pip --python /opt/shadow/bin/python check \
 && /opt/shadow/bin/python -m compileall -q -j 0 /opt/shadow/lib \
 && /opt/shadow/bin/shadow --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="shadow" \
      org.opencontainers.image.description="Shadow-read verification proxy for MongoDB -> PostgreSQL migrations" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/shadow /opt/shadow
# Every flag of `shadow proxy` is also a SHADOW_* variable; set SHADOW_UPSTREAM (and
# SHADOW_PG / SHADOW_MONGO from a secret) at run time and mount the rules directory.
ENV PATH=/opt/shadow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SHADOW_RULES=/etc/shadow/rules \
    SHADOW_LISTEN=0.0.0.0:8080 \
    SHADOW_ADMIN_LISTEN=0.0.0.0:9090
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ['SHADOW_ADMIN_LISTEN'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
ENTRYPOINT ["shadow", "proxy"]
