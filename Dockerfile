# syntax=docker/dockerfile:1
# The StemeDB operator image. Not built in CI (no Docker engine runs there);
# build it with: docker build -t ghcr.io/stemedb/stemedb-operator:0.1.0 .

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
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-index --find-links=/tmp/wheels -c /tmp/constraints.txt stemedb-operator \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && pip uninstall -y pip setuptools wheel 2>/dev/null || true
# Numeric UID/GID so Kubernetes can verify runAsNonRoot (the chart uses 65532).
USER 65532:65532
WORKDIR /tmp
EXPOSE 9090 8080
ENTRYPOINT ["stemedb-operator"]
CMD ["run", "--all-namespaces"]
