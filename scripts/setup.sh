#!/usr/bin/env bash
# Set up emogen on a fresh Debian/Ubuntu machine: what the README's two commands call.
#   scripts/setup.sh             Python 3.11 with venv (apt-get when missing), .venv, pip install -e ".[test]"
#   scripts/setup.sh --browser   the same, plus Debian's headless `chromium` (the report and demo tests drive it)
# System packages are installed with apt-get only when missing, as root or through sudo.
# Idempotent: rerun it any time (an existing .venv is reused and brought up to the pins).
set -euo pipefail
cd "$(dirname "$0")/.."

browser=0
for arg in "$@"; do
    case "$arg" in
        --browser) browser=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "scripts/setup.sh: unknown argument '$arg' (allowed: --browser)" >&2; exit 2 ;;
    esac
done

apt_install() {  # apt_install PACKAGE...: Debian packages, as root or through sudo
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/setup.sh: needs $*, and this machine has no apt-get: install them with its package manager, then rerun" >&2
        exit 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "scripts/setup.sh: needs $* installed (apt-get install $*), which takes root: run it as root or install sudo" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "scripts/setup.sh: apt-get install $*"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

python=${PYTHON:-python3.11}
missing=()
if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3.11 python3.11-venv)   # Debian's python3.11 ships venv's pip bootstrap separately
fi
command -v git >/dev/null 2>&1 || missing+=(git)                           # DVC and the tests' scratch repos
if [ "$browser" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
    missing+=(chromium)                                                     # never a downloaded browser build
fi
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

"$python" -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".[test]"
echo "scripts/setup.sh: ready; activate with: . .venv/bin/activate"
