#!/usr/bin/env bash
# Install promtool (Debian/Ubuntu package `prometheus`) if it is not already on
# PATH. Idempotent: a second run does nothing. Needs root (or sudo) for apt.
# Why the full package: Debian ships promtool only inside `prometheus`;
# --no-install-recommends keeps it to the binaries and a few JS assets, and
# no daemon is started where no init system runs (containers, CI).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "promtool already installed: $(promtool --version 2>&1 | head -1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install prometheus" >&2; exit 1; }
  SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || { echo "apt-get not found: install promtool (>= 2.42) by hand" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Containers without systemd: make sure no Prometheus server was left running.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "installed: $(promtool --version 2>&1 | head -1)"
