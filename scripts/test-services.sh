#!/usr/bin/env bash
# Throwaway services for the test suite, without containers: a PostgreSQL server on 127.0.0.1 for
# the PostgreSQL store's contract tests (sfbpatch-store). Nothing is left behind.
#
#   source scripts/test-services.sh         # export SFBPATCH_TEST_POSTGRES_URL in this shell;
#                                           # the server stops when the shell exits
#   scripts/test-services.sh CMD [ARG...]   # run CMD with it set, then stop the server
#   eval "$(scripts/test-services.sh)"      # print `export` lines; the server keeps running
#   scripts/test-services.sh stop           #   until this (it reads SFBPATCH_TEST_SERVICES_DIR)
#   scripts/test-services.sh pause SECONDS  # stop that server for SECONDS, then start it again
#   SFBPATCH_TEST_PG_TLS=1 ...              # a server that accepts TLS only (CA in DIR/tls)
#   SFBPATCH_TEST_PG_PORT=N ...             # the first port to try (default 55432)
#   scripts/test-services.sh replica        # a synchronous streaming replica of that server
#   scripts/test-services.sh failover       # the primary fails, the replica is promoted
#
# Sourcing again, or with SFBPATCH_TEST_POSTGRES_URL already naming a reachable server, starts
# nothing. Uses the newest /usr/lib/postgresql/*/bin (15 preferred) or PostgreSQL on PATH, and
# installs the distribution's package with apt-get when there is none. initdb and postgres refuse
# to run as root, so as root they run as the `postgres` system user (created when missing).
# Everything it does is reported on stderr; only the `export` lines go to stdout.

_sfbts_log() { printf 'test-services: %s\n' "$*" >&2; }

_sfbts_is_root() { [ "$(id -u)" = 0 ]; }

# Run a server binary as the postgres user (from a directory that user can enter).
_sfbts_as_pg() {
    if ! _sfbts_is_root; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
}

# The directory holding initdb, pg_ctl and postgres.
_sfbts_find_bin() {
    local dir
    if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

_sfbts_install() {
    if ! _sfbts_is_root || ! command -v apt-get >/dev/null 2>&1; then
        _sfbts_log "no PostgreSQL server found: install PostgreSQL (initdb, pg_ctl on PATH)"
        return 1
    fi
    _sfbts_log "no PostgreSQL server found: apt-get install postgresql (once)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

_sfbts_ensure_user() {
    _sfbts_is_root || return 0
    id postgres >/dev/null 2>&1 && return 0
    _sfbts_log "creating the postgres system user"
    if getent group postgres >/dev/null 2>&1; then
        useradd --system --gid postgres --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres
    else
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres
    fi
}

_sfbts_port_free() {
    if python3 -c 'pass' >/dev/null 2>&1; then
        python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' \
            "$1" 2>/dev/null
    else
        # No bind test at hand: a port nothing accepts connections on is taken as free.
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

_sfbts_free_port() {
    local port
    for ((port = $1; port < $1 + 200; port++)); do
        if _sfbts_port_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Stop the server kept in $1 (a directory this script made) and remove the directory.
_sfbts_stop_dir() {
    local dir=$1 bin
    [ -n "$dir" ] && [ -f "$dir/sfbpatch-test-services" ] || return 0
    bin=$(cat "$dir/bin" 2>/dev/null)
    if [ -n "$bin" ] && [ -f "$dir/replica/postmaster.pid" ]; then
        _sfbts_as_pg "$bin/pg_ctl" -D "$dir/replica" -m fast -w -s stop >&2 || true
    fi
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
        _sfbts_log "stopping PostgreSQL in $dir"
        _sfbts_as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -s stop >&2 ||
            _sfbts_log "pg_ctl stop failed; see $dir/postgres.log"
    fi
    rm -rf -- "$dir"
}

# Servers of earlier sessions whose shell is gone (killed before its cleanup ran).
_sfbts_reap_stale() {
    local dir owner
    for dir in "$1"/sfbpatch-pg.*; do
        [ -f "$dir/sfbpatch-test-services" ] || continue
        owner=$(cat "$dir/owner" 2>/dev/null)
        case "$owner" in
            '' | *[!0-9]*) continue ;; # detached, or not ours to judge
        esac
        if ! kill -0 "$owner" 2>/dev/null; then
            _sfbts_log "cleaning up after an earlier session (pid $owner): $dir"
            _sfbts_stop_dir "$dir"
        fi
    done
}

# A server that accepts TLS connections only: a throwaway CA (and a second, unrelated one)
# in $1/tls, the server's certificate for localhost and 127.0.0.1 signed by the first.
_sfbts_tls() {
    local dir=$1 tls=$1/tls
    if ! command -v openssl >/dev/null 2>&1 && _sfbts_is_root && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >&2
    fi
    mkdir -p "$tls"
    _sfbts_log "making a test CA and a server certificate in $tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=sfbpatch test CA' \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=another CA' \
            -keyout "$tls/other-ca.key" -out "$tls/other-ca.crt" 2>/dev/null &&
        openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' \
            -keyout "$dir/data/server.key" -out "$tls/server.csr" 2>/dev/null &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext" &&
        openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
            -CAcreateserial -days 2 -extfile "$tls/san.ext" -out "$dir/data/server.crt" 2>/dev/null || {
        _sfbts_log "openssl could not make the certificates"
        return 1
    }
    chmod 0600 "$dir/data/server.key"
    chmod -R a+rX "$tls"
    printf '%s\n' "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" \
        >>"$dir/data/postgresql.conf"
    printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 trust" \
        "hostnossl all all 127.0.0.1/32 reject" >"$dir/data/pg_hba.conf"
    if _sfbts_is_root; then
        chown postgres: "$dir/data/server.key" "$dir/data/server.crt" "$dir/data/pg_hba.conf"
    fi
}

# Start a server owned by process $1 ("detached": by nobody). Sets _sfbts_url and _sfbts_dir.
_sfbts_start() {
    local owner=$1 bin base dir port attempt
    _sfbts_dir=""
    bin=$(_sfbts_find_bin) || { _sfbts_install && bin=$(_sfbts_find_bin); } || {
        _sfbts_log "no PostgreSQL server binaries after installing"
        return 1
    }
    _sfbts_ensure_user || return 1

    base=${TMPDIR:-/tmp}
    if _sfbts_is_root && ! runuser -u postgres -- test -x "$base" 2>/dev/null; then
        base=/tmp
    fi
    _sfbts_reap_stale "$base"
    dir=$(mktemp -d "$base/sfbpatch-pg.XXXXXX") || return 1
    : >"$dir/sfbpatch-test-services"
    echo "$owner" >"$dir/owner"
    echo "$bin" >"$dir/bin"
    if _sfbts_is_root; then
        chown postgres: "$dir" || { rm -rf -- "$dir"; return 1; }
    fi
    _sfbts_dir=$dir

    _sfbts_log "initdb in $dir/data ($("$bin/postgres" --version))"
    # --no-sync only skips flushing initdb's own files: the directory is thrown away anyway.
    if ! _sfbts_as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        _sfbts_log "initdb failed:"
        tail -n 20 "$dir/initdb.log" >&2
        return 1
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF

# test-services.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 100
EOF

    if [ "${SFBPATCH_TEST_PG_TLS:-}" = 1 ]; then
        _sfbts_tls "$dir" || return 1
    fi

    # Another process may take the port between the check and the bind: then try the next one.
    port=${SFBPATCH_TEST_PG_PORT:-55432}
    for attempt in 1 2 3; do
        port=$(_sfbts_free_port "$port") || {
            _sfbts_log "no free port from $port"
            return 1
        }
        _sfbts_log "starting PostgreSQL on 127.0.0.1:$port"
        if _sfbts_as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" \
            -w -t 30 -s start >&2; then
            break
        fi
        if [ "$attempt" = 3 ] || ! grep -q 'could not bind\|already in use' "$dir/postgres.log"; then
            _sfbts_log "PostgreSQL did not start:"
            tail -n 20 "$dir/postgres.log" >&2
            return 1
        fi
        port=$((port + 1))
    done

    for attempt in $(seq 1 50); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres && break
        if [ "$attempt" = 50 ]; then
            _sfbts_log "PostgreSQL on 127.0.0.1:$port is not ready"
            return 1
        fi
        sleep 0.2
    done
    echo "$port" >"$dir/port"
    _sfbts_log "creating database sfbpatch_test"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres sfbpatch_test || return 1
    _sfbts_url="postgres://postgres@127.0.0.1:$port/sfbpatch_test"
}

# A server started earlier (by this script, or named by the caller) that still answers.
_sfbts_reuse() {
    local url=${SFBPATCH_TEST_POSTGRES_URL:-} bin
    [ -n "$url" ] || return 1
    bin=$(_sfbts_find_bin) || bin=""
    if [ -n "$bin" ] && ! "$bin/pg_isready" -q -d "$url" >/dev/null 2>&1; then
        _sfbts_log "SFBPATCH_TEST_POSTGRES_URL names a server that does not answer; starting one"
        return 1
    fi
    # Never show a password a caller's URL may carry.
    _sfbts_log "using the PostgreSQL server already running: $(printf '%s' "$url" | sed 's#://\([^:@/]*\):[^@]*@#://\1@#')"
    return 0
}

_sfbts_cleanup() {
    if [ -n "${_sfbts_owned_dir:-}" ]; then
        _sfbts_stop_dir "$_sfbts_owned_dir"
        _sfbts_owned_dir=""
    fi
}

# Sourced: start (or reuse) the server, export its URL and stop it when this shell exits.
_sfbts_sourced() {
    local prev
    _sfbts_reuse && return 0
    if ! _sfbts_start "$$"; then
        _sfbts_stop_dir "${_sfbts_dir:-}"
        return 1
    fi
    _sfbts_owned_dir=$_sfbts_dir
    # Keep an EXIT trap the shell already has.
    prev=$(trap -p EXIT)
    if [ -n "$prev" ]; then
        eval "set -- $prev"
        trap "_sfbts_cleanup; $3" EXIT
    else
        trap _sfbts_cleanup EXIT
    fi
    export SFBPATCH_TEST_POSTGRES_URL=$_sfbts_url
    export SFBPATCH_TEST_SERVICES_DIR=$_sfbts_dir
    _sfbts_log "SFBPATCH_TEST_POSTGRES_URL=$_sfbts_url (the server stops when this shell exits)"
}

# Stop the server in $SFBPATCH_TEST_SERVICES_DIR for $1 seconds, then start it again on the
# same port (what a PostgreSQL restart or a short outage does to a run).
_sfbts_pause() {
    local dir=${SFBPATCH_TEST_SERVICES_DIR:-} seconds=$1 bin port
    [ -n "$dir" ] && [ -f "$dir/sfbpatch-test-services" ] || {
        _sfbts_log "pause: SFBPATCH_TEST_SERVICES_DIR names no server this script started"
        return 1
    }
    bin=$(cat "$dir/bin") port=$(cat "$dir/port")
    _sfbts_log "stopping PostgreSQL on port $port for $seconds s"
    _sfbts_as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -s stop >&2 || return 1
    sleep "$seconds"
    _sfbts_as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" \
        -w -t 30 -s start >&2 || return 1
    _sfbts_log "PostgreSQL on port $port is back"
}

# A streaming replica of the server in $SFBPATCH_TEST_SERVICES_DIR, on a port of its own, kept
# in step synchronously (a commit returns once the replica has it: nothing committed is lost
# when it is promoted). Prints `export SFBPATCH_TEST_REPLICA_PORT=...`; `failover` promotes it.
_sfbts_replica() {
    local dir=${SFBPATCH_TEST_SERVICES_DIR:-} bin port rport
    [ -n "$dir" ] && [ -f "$dir/sfbpatch-test-services" ] || {
        _sfbts_log "replica: SFBPATCH_TEST_SERVICES_DIR names no server this script started"
        return 1
    }
    bin=$(cat "$dir/bin") port=$(cat "$dir/port")
    rport=$(_sfbts_free_port $((port + 1))) || return 1
    _sfbts_log "making a streaming replica of port $port on port $rport"
    _sfbts_as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/replica" -R \
        -X stream >&2 || return 1
    printf '%s\n' "port = $rport" "unix_socket_directories = '$dir'" \
        >>"$dir/replica/postgresql.conf"
    _sfbts_as_pg "$bin/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -o "-p $rport" -w -t 30 \
        -s start >&2 || { tail -n 20 "$dir/replica.log" >&2; return 1; }
    echo "$rport" >"$dir/replica-port"
    "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" \
        >/dev/null || return 1
    printf 'export SFBPATCH_TEST_REPLICA_PORT=%q\n' "$rport"
}

# The primary fails (stopped at once); its replica is promoted and takes writes.
_sfbts_failover() {
    local dir=${SFBPATCH_TEST_SERVICES_DIR:-} bin
    [ -f "$dir/replica-port" ] || { _sfbts_log "failover: no replica (run replica first)"; return 1; }
    bin=$(cat "$dir/bin")
    _sfbts_log "stopping the primary; promoting the replica on port $(cat "$dir/replica-port")"
    _sfbts_as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -s stop >&2 || return 1
    _sfbts_as_pg "$bin/pg_ctl" -D "$dir/replica" -w -s promote >&2 || return 1
}

_sfbts_main() {
    case "${1:-}" in
        replica)
            _sfbts_replica
            ;;
        failover)
            _sfbts_failover
            ;;
        stop)
            _sfbts_stop_dir "${SFBPATCH_TEST_SERVICES_DIR:-}"
            ;;
        pause)
            _sfbts_pause "${2:?pause SECONDS}"
            ;;
        '')
            if _sfbts_reuse; then
                printf 'export SFBPATCH_TEST_POSTGRES_URL=%q\n' "$SFBPATCH_TEST_POSTGRES_URL"
                return 0
            fi
            if ! _sfbts_start detached; then
                _sfbts_stop_dir "${_sfbts_dir:-}"
                return 1
            fi
            printf 'export SFBPATCH_TEST_POSTGRES_URL=%q\n' "$_sfbts_url"
            printf 'export SFBPATCH_TEST_SERVICES_DIR=%q\n' "$_sfbts_dir"
            _sfbts_log "server left running; stop it with: scripts/test-services.sh stop"
            ;;
        *)
            [ "$1" = -- ] && shift
            _sfbts_sourced || return 1
            "$@"
            ;;
    esac
}

if (return 0 2>/dev/null); then
    # Sourced: the caller's positional parameters are not ours, and neither are its shell
    # options (`set -e` does not apply inside a function called as a condition).
    if ! _sfbts_sourced; then
        _sfbts_log "failed to start PostgreSQL for the tests"
        return 1
    fi
else
    set -uo pipefail
    if _sfbts_main "$@"; then exit 0; else exit $?; fi
fi
