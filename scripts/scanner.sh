#!/usr/bin/env bash
# The manifest scanner (checkov) in its own virtualenv, from pinned requirements; a no-op when the
# pinned version is already there. Its own venv because checkov's dependencies clash with the
# project's (see scripts/scanner-requirements.txt). tests/render/test_scanner.py runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
SCAN_VENV=${SCAN_VENV:-.venv-scan}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=scripts/scanner-requirements.txt
want=$(sed -n 's/^checkov==//p' "$REQUIREMENTS")
if [ -x "$SCAN_VENV/bin/checkov" ] && [ "$("$SCAN_VENV/bin/checkov" --version 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if [ ! -x "$SCAN_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$SCAN_VENV" || { echo "scanner: could not create a virtualenv (on Debian: apt-get install python3-venv)" >&2; exit 2; }
fi
"$SCAN_VENV/bin/python" -m pip install --quiet --upgrade pip
"$SCAN_VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
echo "scanner: checkov $("$SCAN_VENV/bin/checkov" --version) in $SCAN_VENV"
