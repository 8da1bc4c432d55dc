#!/usr/bin/env bash
# The HTML-report test drives Debian's chromium with playwright-core (never a browser
# download). Installs the package when it is missing (as root, or through sudo).
set -euo pipefail
CHROMIUM="${DMASIM_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
echo "--- installing chromium from Debian (needed by the HTML report test)"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
