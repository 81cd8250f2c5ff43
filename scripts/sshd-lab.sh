#!/usr/bin/env bash
# OpenSSH servers on 127.0.0.1 that stand in for Windows hosts: one sshd per lab server, each on
# its own port with its own host key, key-only login, and a ForceCommand into
# `sfbpatch lab shell`, so that the SSH target can be tested against a real sshd. Used by the
# SSH tests (crates/cli/tests/it/ssh.rs, crates/ssh/tests/sshd.rs, whose --bin is a fake host)
# and the SSH benchmark (crates/cli/benches/ssh.rs). The account is the caller's; sessions get
# an empty home of their own, so that the account's shell startup files stay out of them.
#
#   scripts/sshd-lab.sh install
#       Make sure sshd is there (apt-get update once, then apt-get install -y openssh-server).
#       Prints the path of sshd. Exit 1 when it cannot be installed. scripts/test does this; the
#       tests never install anything.
#
#   scripts/sshd-lab.sh find
#       Print the path of sshd; exit 1 (with a message) when it is not installed.
#
#   scripts/sshd-lab.sh start --dir DIR --lab LAB --bin SFBPATCH --authorized-keys FILE \
#                             [--owner PID] FQDN...
#       Start one sshd per FQDN, its files in DIR/FQDN/. A host that was started before in DIR
#       keeps its port and its host key (delete DIR/FQDN/ssh_host_ed25519_key to give it a new
#       one). Prints one line per host: `FQDN 127.0.0.1 PORT SHA256:...` (the host-key
#       fingerprint). With --owner, the servers stop by themselves when process PID is gone.
#
#   scripts/sshd-lab.sh stop --dir DIR [FQDN...]
#       Stop the servers (all of DIR without FQDN) with SIGTERM: the listener, its sessions and
#       the commands they run.
#
#   scripts/sshd-lab.sh kill --dir DIR FQDN...
#       The same with SIGKILL: the host drops off the network in the middle of whatever it runs.
#
# Only processes this script started are signalled, by the ids it recorded. Messages go to
# stderr; only the results above go to stdout.
set -uo pipefail

_log() { printf 'sshd-lab: %s\n' "$*" >&2; }
_die() {
    _log "$*"
    exit 1
}

_find_sshd() {
    local p
    for p in /usr/sbin/sshd /usr/local/sbin/sshd; do
        [ -x "$p" ] && {
            echo "$p"
            return 0
        }
    done
    p=$(command -v sshd 2>/dev/null) && [ -n "$p" ] && {
        echo "$p"
        return 0
    }
    return 1
}

cmd_find() {
    _find_sshd || {
        _log "sshd is not installed (scripts/sshd-lab.sh install, run by scripts/test, installs it)"
        return 1
    }
}

cmd_install() {
    local sshd
    if sshd=$(_find_sshd); then
        echo "$sshd"
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        _log "sshd is not installed and cannot be installed here (needs root and apt-get)"
        return 1
    fi
    # Test binaries may ask at the same time: one installs, the others wait for it.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"${TMPDIR:-/tmp}/sfbpatch-sshd-install.lock"
        flock 9
        if sshd=$(_find_sshd); then
            echo "$sshd"
            return 0
        fi
    fi
    _log "sshd not found: apt-get install openssh-server (once)"
    # policy-rc.d may refuse to start the system's own sshd; that is fine, it is not used.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openssh-server >&2 || return 1
    sshd=$(_find_sshd) || {
        _log "openssh-server installed, but no sshd found"
        return 1
    }
    echo "$sshd"
}

# Every process below $1, children before parents' siblings (read from /proc: no ps needed).
_descendants() {
    local root=$1 stat pid ppid rest
    local -A children=()
    for stat in /proc/[0-9]*/stat; do
        read -r rest <"$stat" 2>/dev/null || continue
        pid=${rest%% *}
        # The command name may hold spaces and parentheses: the state and the parent's id
        # follow its last closing parenthesis.
        rest=${rest##*) }
        read -r _ ppid _ <<<"$rest"
        children[$ppid]+="$pid "
    done
    local queue=("$root") next
    while [ ${#queue[@]} -gt 0 ]; do
        next=${queue[0]}
        queue=("${queue[@]:1}")
        for pid in ${children[$next]:-}; do
            echo "$pid"
            queue+=("$pid")
        done
    done
}

# Whether process $1 runs (a zombie left for an init that does not reap does not count).
_alive() {
    local rest
    read -r rest <"/proc/$1/stat" 2>/dev/null || return 1
    rest=${rest##*) }
    [ "${rest%% *}" != Z ]
}

# Signal the sshd of one host directory and everything it started.
_signal_host() {
    local dir=$1 sig=$2 pid pids watchdog
    watchdog=$(cat "$dir/watchdog.pid" 2>/dev/null)
    if [ -n "$watchdog" ]; then
        kill "$watchdog" 2>/dev/null
        rm -f "$dir/watchdog.pid"
    fi
    pid=$(cat "$dir/sshd.pid" 2>/dev/null)
    case "$pid" in
        '' | *[!0-9]*) return 0 ;;
    esac
    # Only a process that is still the sshd this directory started.
    if ! grep -qF "$dir/sshd_config" "/proc/$pid/cmdline" 2>/dev/null; then
        rm -f "$dir/sshd.pid"
        return 0
    fi
    pids="$pid $(_descendants "$pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill "-$sig" $pids 2>/dev/null
    for _ in $(seq 1 50); do
        _alive "$pid" || break
        sleep 0.1
    done
    rm -f "$dir/sshd.pid"
}

_port_free() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' \
            "$1" 2>/dev/null
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# A single-quoted word for sshd_config / sh.
_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

_start_host() {
    local base=$1 fqdn=$2 lab=$3 bin=$4 owner=$5 sshd=$6 user=$7
    local dir="$base/$fqdn" port kept attempt fp pam=no
    mkdir -p "$dir/home" || return 1
    chmod 700 "$dir"
    if [ -n "$(cat "$dir/sshd.pid" 2>/dev/null)" ]; then
        _signal_host "$dir" TERM
    fi
    if [ ! -f "$dir/ssh_host_ed25519_key" ]; then
        rm -f "$dir/ssh_host_ed25519_key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "$fqdn" -f "$dir/ssh_host_ed25519_key" >&2 || return 1
    fi
    fp=$(ssh-keygen -l -E sha256 -f "$dir/ssh_host_ed25519_key.pub" | cut -d' ' -f2)
    # sshd refuses a locked account (password field "!...") unless PAM decides.
    if getent shadow "$user" 2>/dev/null | cut -d: -f2 | grep -q '^!'; then
        pam=yes
    fi
    # A host started before keeps its port; a new one takes a free port at random.
    kept=$(cat "$dir/port" 2>/dev/null)
    port=$kept
    for attempt in $(seq 1 30); do
        if [ -z "$kept" ]; then
            port=$((20000 + RANDOM % 40000))
            _port_free "$port" || continue
        fi
        cat >"$dir/sshd_config" <<EOF
# scripts/sshd-lab.sh: $fqdn
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $base/authorized_keys
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitUserEnvironment no
PermitTTY no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
StrictModes no
UsePAM $pam
PrintMotd no
MaxStartups 200
MaxSessions 100
LogLevel VERBOSE
# sshd runs the command through the account's shell, and bash reads ~/.bashrc for commands that
# come over SSH: an empty home of its own keeps the account's startup files out of every step.
SetEnv HOME=$dir/home
# SFTP (the SSH target uploading an installer) reaches the ForceCommand too, with this as
# SSH_ORIGINAL_COMMAND: lab shell serves the lab server's files.
Subsystem sftp sfbpatch-lab-sftp
ForceCommand exec $(_quote "$bin") lab shell --lab $(_quote "$lab") --host $(_quote "$fqdn")
EOF
        # Daemon mode: sshd binds its port before it detaches, so it accepts connections as
        # soon as this returns.
        if "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1; then
            break
        fi
        if [ "$attempt" = 30 ]; then
            _log "$fqdn: sshd did not start on port $port; see $dir/sshd.log"
            tail -n 5 "$dir/sshd.log" >&2 2>/dev/null
            return 1
        fi
        # Restarting on the port it had: the old listener may still be closing.
        [ -n "$kept" ] && sleep 0.2
    done
    echo "$port" >"$dir/port"
    for _ in $(seq 1 50); do
        [ -s "$dir/sshd.pid" ] && break
        sleep 0.1
    done
    if [ -n "$owner" ]; then
        (
            while _alive "$owner" && [ -f "$dir/sshd.pid" ]; do sleep 1; done
            rm -f "$dir/watchdog.pid"
            _signal_host "$dir" TERM
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$dir/watchdog.pid"
    fi
    echo "$fqdn 127.0.0.1 $port $fp"
}

cmd_start() {
    local dir="" lab="" bin="" keys="" owner="" hosts=() sshd user fqdn
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir=$2; shift 2 ;;
            --lab) lab=$2; shift 2 ;;
            --bin) bin=$2; shift 2 ;;
            --authorized-keys) keys=$2; shift 2 ;;
            --owner) owner=$2; shift 2 ;;
            -*) _die "start: unknown option $1" ;;
            *) hosts+=("$1"); shift ;;
        esac
    done
    [ -n "$dir" ] && [ -n "$lab" ] && [ -n "$bin" ] && [ -n "$keys" ] ||
        _die "start needs --dir, --lab, --bin and --authorized-keys"
    [ ${#hosts[@]} -gt 0 ] || _die "start: name at least one host (FQDN)"
    sshd=$(cmd_find) || return 1
    command -v ssh-keygen >/dev/null 2>&1 || _die "ssh-keygen is missing"
    mkdir -p "$dir" || return 1
    dir=$(cd "$dir" && pwd)
    lab=$(cd "$lab" && pwd) || _die "no lab at $lab"
    case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
    [ -x "$bin" ] || _die "$bin is not an executable"
    # sshd's privilege separation directory.
    if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd && chmod 755 /run/sshd
    fi
    { printf 'restrict '; cat "$keys"; } >"$dir/authorized_keys" || return 1
    chmod 600 "$dir/authorized_keys"
    user=$(id -un)
    for fqdn in "${hosts[@]}"; do
        case "$fqdn" in
            */* | .* | '') _die "not a host name: $fqdn" ;;
        esac
        _start_host "$dir" "$fqdn" "$lab" "$bin" "$owner" "$sshd" "$user" || return 1
    done
}

cmd_signal() {
    local sig=$1 dir="" hosts=() h
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir=$2; shift 2 ;;
            -*) _die "unknown option $1" ;;
            *) hosts+=("$1"); shift ;;
        esac
    done
    [ -n "$dir" ] || _die "--dir is required"
    [ -d "$dir" ] || return 0
    if [ ${#hosts[@]} -eq 0 ]; then
        for h in "$dir"/*/sshd_config; do
            [ -f "$h" ] && _signal_host "$(dirname "$h")" "$sig"
        done
    else
        for h in "${hosts[@]}"; do
            _signal_host "$dir/$h" "$sig"
        done
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    find) cmd_find ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_signal TERM "$@" ;;
    kill) shift; cmd_signal KILL "$@" ;;
    *)
        sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
