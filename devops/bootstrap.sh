#!/usr/bin/env bash
# Install what a MIQA stack needs on a Debian 12 machine with Python >= 3.10, idempotently:
# system packages (redis-server; chromium with --browser), the .venv with the package and its
# worker/test extras (torch==2.13.0 first: the local CPU build where one is offered), and the
# web client (when npm is present). Re-running skips what is already in place.
# Usage: devops/bootstrap.sh [--browser]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
want_browser=0
[[ "${1:-}" == "--browser" ]] && want_browser=1

say() { printf '[bootstrap] %s\n' "$*" >&2; }
SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi

PY="${PYTHON:-python3}"
apt_pkgs=()
command -v redis-server >/dev/null || apt_pkgs+=(redis-server)
# Debian's own python3 needs python3-venv for `python3 -m venv`
if [[ ! -x .venv/bin/python ]] && ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  apt_pkgs+=(python3-venv)
fi
# the web client builds with node >= 18.18 (Debian 12's nodejs is 18.20) and npm
command -v npm >/dev/null || apt_pkgs+=(nodejs npm)
if [[ $want_browser == 1 ]]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
  # fonts for readable screenshots; harmless when present
  dpkg -s fonts-dejavu-core >/dev/null 2>&1 || apt_pkgs+=(fonts-dejavu-core)
fi
if ((${#apt_pkgs[@]})); then
  if command -v apt-get >/dev/null; then
    say "apt-get install ${apt_pkgs[*]}"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  else
    say "missing ${apt_pkgs[*]} and no apt-get: install them and re-run"; exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
stamp=".venv/.miqa-installed"
want="$(cat setup.py | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing Python packages (torch==2.13.0, girder 5.0.x, monai, torchio, itk-io ...)"
  log=".venv/pip-install.log"
  if ! { "$VPY" -m pip install --upgrade pip wheel setuptools \
         && "$VPY" -m pip install "torch==2.13.0" \
         && "$VPY" -m pip install -e ".[worker,train,test,dev]"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; say "pip install failed; log: $ROOT/$log"; exit 1
  fi
  "$VPY" -c "import torch, girder, girder_worker, monai, torchio, itk, miqa_worker" \
    || { say "Python install is incomplete; log: $ROOT/$log"; exit 1; }
  echo "$want" > "$stamp"
fi

if [[ ! -f client/build.sh ]]; then
  :  # no web client in this checkout
elif command -v npm >/dev/null; then
  # `up` must end with a working web client: a client that does not build fails the bootstrap.
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)'; then
    say "the web client needs node >= 18.18 (found $(node --version 2>/dev/null)); install a newer nodejs and re-run"; exit 1
  fi
  if [[ ! -f girder_miqa/web_client/dist/girder-plugin-miqa.umd.cjs \
        || -n "$(find client -path client/node_modules -prune -o -newer girder_miqa/web_client/dist/girder-plugin-miqa.umd.cjs -type f -print -quit)" ]]; then
    say "building the web client"
    bash client/build.sh >&2 || { say "the web client did not build (node $(node --version)); see the output above"; exit 1; }
  fi
else
  say "npm not found: cannot build the web client; install nodejs and npm and re-run"; exit 1
fi
