#!/usr/bin/env bash
# Build the operator's OCI image without a container engine or root:
# hack/image/build.py makes the root filesystem from Debian 12's packages and
# the operator's wheels and writes dist/stemedb-operator-<version>.oci.tar (an
# oci-archive) and its digest. See docs/install.md ("The image").
#
# PYTHON: a Python 3.11 with pip (default .venv/bin/python). SOURCE_DATE_EPOCH:
# the mtime of every file and the image's `created` (default: HEAD's commit
# time), so that the same inputs give the same digest.
set -euo pipefail
unset CDPATH
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
for tool in apt-get apt-cache dpkg-deb git; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[image] $tool not found (a Debian machine is needed)" >&2; exit 1; }
done
[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null 2>&1 || { echo "[image] PYTHON=$PYTHON not found: run 'make .venv/.installed' or set PYTHON" >&2; exit 1; }
exec "$PYTHON" hack/image/build.py "$@"
