#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine, then runs it.
# Used by the README Quickstart and by .ci/run. Idempotent: installed things are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# The OpenTelemetry JS SDK that tests/interop runs (they skip without node): npm ci when the lock changed.
js=tests/interop/js
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  installed="$js/node_modules/.package-lock.json"
  if [ ! -f "$installed" ] || [ "$js/package-lock.json" -nt "$installed" ]; then
    npm ci --silent --no-audit --no-fund --prefix "$js"
  fi
fi
python3 -m ruff check mltrace_otel tests bench
# The documentation site: broken links and anchors fail the build (tests/test_docs.py builds it too).
site_dir=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --quiet --site-dir "$site_dir"
rm -rf "$site_dir"
exec python3 -m pytest -q "$@"
