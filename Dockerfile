# syntax=docker/dockerfile:1
# The StemeDB operator image for Docker users:
#   docker build -t ghcr.io/stemedb/stemedb-operator:0.1.0 .
# The released image is built without Docker by `make image` (hack/image/build.py,
# docs/install.md "The image"): a minimal Debian 12 from Debian's packages, no
# shell. This file is kept aligned with it: the same sources (.dockerignore), the
# same wheels (constraints.txt), user 65532:65532, entrypoint, command, ports and
# environment; the base differs (python:3.11-slim, with a shell).

# --- build: a wheel of the operator (build tools stay in this stage) --------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY controller ./controller
COPY stemedb_sim ./stemedb_sim
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels -c constraints.txt \
      "$(ls /wheels/stemedb_operator-*.whl)"

# --- final: only the installed wheel, no compilers, no pip cache -----------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-index --find-links=/tmp/wheels -c /tmp/constraints.txt stemedb-operator \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && pip uninstall -y pip setuptools wheel 2>/dev/null || true
# Numeric UID/GID so Kubernetes can verify runAsNonRoot (the chart uses 65532).
USER 65532:65532
WORKDIR /
EXPOSE 9090 8080
ENTRYPOINT ["stemedb-operator"]
CMD ["run", "--all-namespaces"]
