#!/usr/bin/env bash
# tmux, the terminal the display tests run sfbpatch in (a real terminal emulator whose screen
# they read back). Installs it when missing; never fails the test run: without it those tests
# say that they skipped (and fail under SFBPATCH_REQUIRE_ALL=1).
set -uo pipefail

if command -v tmux >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tmux.sh: tmux is missing and cannot be installed here (needs root and apt-get); the terminal tests will skip" >&2
    exit 0
fi
echo "tmux.sh: installing tmux" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends tmux; } >/tmp/tmux-install.log 2>&1; then
    echo "tmux.sh: installing tmux failed (see /tmp/tmux-install.log); the terminal tests will skip" >&2
fi
exit 0
