#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright; install it once if it is missing.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
echo "installing Chromium for the browser tests"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
  || echo "could not install chromium; browser tests will be skipped outside CI" >&2
exit 0
