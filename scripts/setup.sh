#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian/Ubuntu machine: a virtualenv with the
# package and its extras, and Prometheus (for the local stack and integration tests) when root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || { echo "setup: could not create a virtualenv (on Debian: apt-get install python3-venv)" >&2; exit 2; }
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"

# Debian packages: Prometheus and promtool (local stack, integration tests), h2load from
# nghttp2-client (the data-plane benchmark's C load generator).
packages=()
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  packages+=(prometheus)
fi
command -v h2load >/dev/null 2>&1 || packages+=(nghttp2-client)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${packages[*]} from Debian packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    echo "setup: ${packages[*]} not installed and not root: tests, demo steps and benchmarks that need them will say so" >&2
  fi
fi
# The Debian package enables a system service; this project starts its own on 127.0.0.1 only.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
