#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the report screenshot test. Installs it when missing;
# never fails the test run: without it the test prints that it skipped.
set -uo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: chromium is missing and cannot be installed here (needs root and apt-get); the screenshot test will skip" >&2
    exit 0
fi
echo "chromium.sh: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >/tmp/chromium-install.log 2>&1; then
    echo "chromium.sh: installing chromium failed (see /tmp/chromium-install.log); the screenshot test will skip" >&2
fi
exit 0
