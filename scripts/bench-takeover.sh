#!/usr/bin/env bash
# Takeover time of `sfbpatch standby`: the controller is SIGKILLed at a random moment inside its
# outage window (lab at one simulated minute per second); the time is measured until another
# process holds the run's lease in the SQLite state store.
#   scripts/bench-takeover.sh [KILLS] [same-host|other-host]
# same-host (default): the standby runs on the controller's host and sees its process gone.
# other-host: controller and standby are named as two hosts (--controller-name ctl-a, ctl-b), so
# the standby only sees the leases expire (the default --lease-ttl, 20 s).
# Prints each time, then min/median/max.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked
B=$PWD/target/debug/sfbpatch
assets=$PWD/crates/cli/assets
mode=${2:-same-host}
case $mode in
    same-host) first=(--lease-ttl 6) second=() ;;
    other-host) first=(--controller-name ctl-a) second=(--controller-name ctl-b) ;;
    *) echo "mode: same-host or other-host" >&2; exit 2 ;;
esac
times=()
for _ in $(seq 1 "${1:-10}"); do
    d=$(mktemp -d)
    (
        cd "$d"
        cp "$assets"/{demo-topology.xml,demo-package.toml,SkypeServerUpdateInstaller.exe} .
        "$B" lab init lab --topology demo-topology.xml --speed 60 >/dev/null 2>&1
        "$B" apply demo-topology.xml --package demo-package.toml --lab lab --state state.db \
            --yes --only se1.dublin.demo.example "${first[@]}" >/dev/null 2>&1 &
        apid=$!
        sleep 3
        "$B" standby --state state.db --run 1 --poll 1 ${second[@]+"${second[@]}"} >/dev/null 2>&1 &
        spid=$!
        sleep "5.$((RANDOM % 1000))"
        t0=$(date +%s.%N)
        kill -9 "$apid"
        wait "$apid" 2>/dev/null || true
        python3 - "$apid" "$t0" <<'PY'
import sqlite3, sys, time
apid, t0 = int(sys.argv[1]), float(sys.argv[2])
while time.time() - t0 < 60:
    try:
        c = sqlite3.connect("state.db", timeout=1)
        rows = c.execute("SELECT pid FROM leases").fetchall()
        c.close()
        if rows and all(r[0] != apid for r in rows):
            print("%.2f" % (time.time() - t0))
            break
    except sqlite3.Error:
        pass
    time.sleep(0.01)
else:
    print("none")
PY
        wait "$spid" || true
    ) >"$d.out"
    t=$(cat "$d.out")
    rm -rf "$d" "$d.out"
    echo "takeover $t s"
    times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "min %s s, median %s s, max %s s\n", a[1], (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[NR]}'
