#!/usr/bin/env bash
# Set up bnnconvert in ./.venv (Python 3.10-3.12).
#   ./setup.sh          the package and its runtime stack
#   ./setup.sh --test   also the test tools, PyTorch (the ONNX tests) and the system packages the tests use
#                       (OpenSSH server/client, Chromium, a JDK and JUnit 4; needs root/apt)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

if [[ $with_tests == 1 ]]; then
  packages=(openssh-server openssh-client chromium default-jdk-headless junit4)
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    echo "setup: installing system packages: ${missing[*]}" >&2
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true  # an old pip still works
# --test also installs the torch extra (torch==2.13.0, a local CPU wheel): the ONNX family tests need it.
extra=""; [[ $with_tests == 1 ]] && extra="[test,torch]"
log=$(mktemp)
if ! .venv/bin/python -m pip install -q -e ".${extra}" >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2; rm -f "$log"
  echo "setup: pip install failed (see above)" >&2; exit 1
fi
rm -f "$log"
.venv/bin/python -c "import bnnconvert" || { echo "setup: bnnconvert failed to install" >&2; exit 1; }
echo "setup: ready (.venv/bin/bnnconvert)" >&2
