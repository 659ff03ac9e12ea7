#!/usr/bin/env bash
# Install Debian's Chromium for the reviewer-inbox browser test, when it is missing.
# Playwright drives /usr/bin/chromium; `playwright install` is never run because
# it downloads its own browser build.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: /usr/bin/chromium is missing and installing it needs root; run: sudo $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
