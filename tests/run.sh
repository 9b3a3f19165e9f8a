#!/usr/bin/env bash
# Install everything the test suite needs, then lint, type-check and run the tests.
# Usage: bash tests/run.sh [pytest args...]   (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null; then
  echo "tests/run.sh: python3 (3.11 or newer) is required" >&2; exit 1
fi
if ! command -v npm >/dev/null; then
  echo "tests/run.sh: npm is required to install the pinned Claude Code CLI (apt-get install npm)" >&2; exit 1
fi

# System tools the tests drive for real: Debian's Chromium (the web app's browser tests,
# through Playwright; no browser download) and systemd-analyze (service unit checks).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v git >/dev/null || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
command -v chattr >/dev/null || missing+=(e2fsprogs)  # immutable files: git failure tests
command -v ip >/dev/null || missing+=(iproute2)  # network namespaces: --expose lan
command -v bwrap >/dev/null || missing+=(bubblewrap)  # --sandbox (Claude Code's and rcd's)
command -v socat >/dev/null || missing+=(socat)  # --sandbox: the way to its proxy
command -v curl >/dev/null || missing+=(curl)  # what sandboxed commands try to reach with
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "== installing Python packages into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== installing the pinned Claude Code CLI (package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error
node_modules/.bin/claude --version

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
# Tests that cannot run here fail rather than skip (see tests/CONVENTIONS.md).
export RCD_FULL_SUITE=1
exec .venv/bin/python -m pytest "$@"
