#!/usr/bin/env bash
# Provision a throw-away PostgreSQL 15 server for the test suite.
#
#   scripts/provision_postgres.sh [start]   # init (once), start (if needed), create roles/dbs, print URL
#   scripts/provision_postgres.sh stop      # fast shutdown if running
#   scripts/provision_postgres.sh status    # exit 0 if running, 3 if not
#   scripts/provision_postgres.sh url       # print the SQLAlchemy URL
#
# The cluster lives in <repo>/.cache/postgres/15/data (git-ignored) and listens
# on 127.0.0.1:${OSL_PG_PORT:-55432} only, so it never clashes with a system
# PostgreSQL on 5432. It is idempotent: a second `start` is a quick no-op.
# Progress goes to stderr; `start` prints the URL as its last stdout line.
#
# Created objects:
#   role osl / osl-test-password  -> databases osl_test, osl_test2, osl_airflow_example
#                                    (the Airflow example's data; owner osl),
#                                    schema inventory in osl_test (owner osl)
#   role marquez / marquez        -> database marquez (owner marquez)
#
# Settings are tuned for disposable test data (fsync=off etc.): do not keep
# anything valuable in this cluster.
set -euo pipefail

PG_MAJOR=15
PG_BINDIR="${OSL_PG_BINDIR:-/usr/lib/postgresql/${PG_MAJOR}/bin}"
PG_PORT="${OSL_PG_PORT:-55432}"
PG_LISTEN=127.0.0.1

APP_ROLE=osl
APP_PASSWORD=osl-test-password
APP_DBS=(osl_test osl_test2 osl_airflow_example)
APP_SCHEMA_DB=osl_test
APP_SCHEMA=inventory
MARQUEZ_ROLE=marquez
MARQUEZ_PASSWORD=marquez
MARQUEZ_DB=marquez

READY_TIMEOUT=30

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/.." && pwd -P)"
PG_BASE="${REPO_ROOT}/.cache/postgres/${PG_MAJOR}"
PG_DATA="${PG_BASE}/data"
PG_SOCK="${PG_BASE}/run"
PG_LOG="${PG_BASE}/postgres.log"
PG_LOCK="${PG_BASE}/provision.lock"

# Unix socket paths are limited to 107 bytes; fall back to /tmp for deep checkouts.
if (( ${#PG_SOCK} + 20 > 107 )); then
    PG_SOCK="/tmp/osl-pg-$(printf '%s' "${REPO_ROOT}" | md5sum | cut -c1-12)"
fi

# Never let the caller's libpq environment (PGHOST, PGPORT, PGUSER, ...) leak
# into our own pg_ctl/psql/pg_isready calls.
while read -r _var; do unset "${_var}"; done < <(compgen -e | grep '^PG' || true)

log() { printf '[provision_postgres] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

url() {
    printf 'postgresql+psycopg2://%s:%s@%s:%s/%s\n' \
        "${APP_ROLE}" "${APP_PASSWORD}" "${PG_LISTEN}" "${PG_PORT}" "${APP_DBS[0]}"
}

[[ "${PG_PORT}" =~ ^[0-9]+$ ]] && (( PG_PORT > 0 && PG_PORT < 65536 )) \
    || die "OSL_PG_PORT must be a TCP port number, got '${PG_PORT}'"

# The server refuses to run as root: use the postgres OS user when we are root,
# otherwise run everything as the invoking user.
if (( EUID == 0 )); then
    PG_OS_USER=postgres
else
    PG_OS_USER="$(id -un)"
fi

as_pg() {
    if (( EUID == 0 )); then
        # cd / so the server/tools don't complain about an unreadable cwd (e.g. /root)
        (cd / && runuser -u "${PG_OS_USER}" -- "$@")
    else
        "$@"
    fi
}

pg_tool() { local tool="$1"; shift; as_pg "${PG_BINDIR}/${tool}" "$@"; }

# ---------------------------------------------------------------- installation

ensure_binaries() {
    if [[ -x "${PG_BINDIR}/postgres" && -x "${PG_BINDIR}/initdb" && -x "${PG_BINDIR}/pg_ctl" \
          && -x "${PG_BINDIR}/psql" && -x "${PG_BINDIR}/pg_isready" ]]; then
        return 0
    fi
    (( EUID == 0 )) || die "PostgreSQL ${PG_MAJOR} binaries missing in ${PG_BINDIR} and not root to apt-get install them"
    command -v apt-get >/dev/null || die "PostgreSQL ${PG_MAJOR} missing in ${PG_BINDIR} and apt-get is not available"
    log "PostgreSQL ${PG_MAJOR} not found in ${PG_BINDIR}; installing postgresql-${PG_MAJOR} via apt-get"
    local apt_log
    apt_log="$(mktemp -t osl-pg-apt.XXXXXX)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                  "postgresql-${PG_MAJOR}"; } >"${apt_log}" 2>&1; then
        tail -n 30 "${apt_log}" >&2 || true
        die "apt-get install postgresql-${PG_MAJOR} failed (full log: ${apt_log})"
    fi
    rm -f "${apt_log}"
    [[ -x "${PG_BINDIR}/postgres" ]] || die "postgresql-${PG_MAJOR} installed but ${PG_BINDIR}/postgres is still missing"
    log "installed postgresql-${PG_MAJOR}"
}

ensure_os_user() {
    (( EUID == 0 )) || return 0
    id -u "${PG_OS_USER}" >/dev/null 2>&1 && return 0
    log "creating OS user ${PG_OS_USER}"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /bin/bash "${PG_OS_USER}"
}

# ------------------------------------------------------------------ filesystem

# Make sure the postgres user can reach and write ${PG_BASE}.
ensure_dirs() {
    mkdir -p "${PG_BASE}" "${PG_SOCK}"
    (( EUID == 0 )) || return 0
    local owner
    for d in "${PG_BASE}" "${PG_SOCK}"; do
        owner="$(stat -c %U "${d}")"
        [[ "${owner}" == "${PG_OS_USER}" ]] || chown "${PG_OS_USER}:" "${d}"
    done
    if [[ -d "${PG_DATA}" && "$(stat -c %U "${PG_DATA}")" != "${PG_OS_USER}" ]]; then
        log "fixing ownership of ${PG_DATA}"
        chown -R "${PG_OS_USER}:" "${PG_DATA}"
    fi
    if ! as_pg test -w "${PG_BASE}" -a -x "${PG_BASE}"; then
        # Some ancestor is not traversable by ${PG_OS_USER}: add o+x where missing.
        local d="${PG_BASE}"
        while [[ "${d}" != / ]]; do
            d="$(dirname -- "${d}")"
            if [[ "$(stat -c %A "${d}")" != *[xt] ]]; then
                log "chmod o+x ${d} (so ${PG_OS_USER} can traverse it)"
                chmod o+x "${d}"
            fi
        done
        as_pg test -w "${PG_BASE}" || die "${PG_OS_USER} still cannot write ${PG_BASE}"
    fi
}

# --------------------------------------------------------------- server state

# postmaster.pid line 1 = pid, line 4 = port
pidfile_field() { sed -n "${1}p" "${PG_DATA}/postmaster.pid" 2>/dev/null || true; }

# True if pid is a live (not zombie) postgres process. A killed postmaster can
# linger as a zombie when PID 1 is slow to reap (seen in this VM); kill -0 and
# hence pg_ctl status still treat such a zombie as running.
pid_is_live_postgres() {
    local pid="$1" stat comm state
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/${pid}/stat" 2>/dev/null)" || return 1
    comm="${stat#*(}"; comm="${comm%%)*}"
    state="${stat##*) }"; state="${state%% *}"
    [[ "${comm}" == postgres || "${comm}" == postmaster ]] && [[ "${state}" != Z && "${state}" != X ]]
}

is_running() {
    [[ -f "${PG_DATA}/PG_VERSION" ]] || return 1
    pg_tool pg_ctl status -D "${PG_DATA}" >/dev/null 2>&1 || return 1
    pid_is_live_postgres "$(pidfile_field 1)"
}

is_ready() {
    pg_tool pg_isready -q -h "${PG_SOCK}" -p "${PG_PORT}" -d postgres -U postgres \
        && pg_tool pg_isready -q -h "${PG_LISTEN}" -p "${PG_PORT}" -d postgres -U postgres
}

# After a crash/container restart the pid in a stale postmaster.pid may be a
# zombie or belong to an unrelated process, which makes both pg_ctl status and
# postgres itself believe the server is still up. Drop the pid file if that pid
# is not a live postgres.
drop_stale_pidfile() {
    local pid lock="${PG_SOCK}/.s.PGSQL.${PG_PORT}.lock"
    if [[ -f "${PG_DATA}/postmaster.pid" ]]; then
        pid="$(pidfile_field 1)"
        if ! pid_is_live_postgres "${pid}"; then
            log "removing stale ${PG_DATA}/postmaster.pid (pid ${pid:-?} is not a running postgres)"
            rm -f "${PG_DATA}/postmaster.pid"
        fi
    fi
    # same for the socket lock file (the socket dir is ours alone)
    if [[ -f "${lock}" ]]; then
        pid="$(sed -n 1p "${lock}" 2>/dev/null || true)"
        if ! pid_is_live_postgres "${pid}"; then
            rm -f "${lock}" "${PG_SOCK}/.s.PGSQL.${PG_PORT}"
        fi
    fi
}

sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

write_conf() {
    # Rewritten on every (cold) start so OSL_PG_PORT changes take effect.
    local conf="${PG_DATA}/osl_provision.conf"
    cat >"${conf}.tmp" <<EOF
# Managed by scripts/provision_postgres.sh -- rewritten on every start.
listen_addresses = '${PG_LISTEN}'
port = ${PG_PORT}
unix_socket_directories = $(sql_quote "${PG_SOCK}")
# disposable test cluster: trade durability for speed
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    mv -f "${conf}.tmp" "${conf}"
    (( EUID == 0 )) && chown "${PG_OS_USER}:" "${conf}"
    return 0
}

init_cluster() {
    [[ -f "${PG_DATA}/PG_VERSION" ]] && return 0
    if [[ -e "${PG_DATA}" ]] && [[ -n "$(ls -A "${PG_DATA}" 2>/dev/null)" ]]; then
        die "${PG_DATA} exists but is not a PostgreSQL data directory; remove it and rerun"
    fi
    rm -rf "${PG_DATA}" "${PG_BASE}"/data.tmp.*
    # initdb into a temp dir and rename, so an interrupted initdb never leaves
    # a half-initialised data dir behind.
    local tmp="${PG_BASE}/data.tmp.$$"
    log "initdb ${PG_DATA}"
    local pwfile
    pwfile="$(mktemp "${PG_BASE}/pwfile.XXXXXX")"
    # superuser password only matters over TCP (scram); over the socket it is trust
    printf '%s\n' "$(head -c 18 /dev/urandom | base64)" >"${pwfile}"
    (( EUID == 0 )) && chown "${PG_OS_USER}:" "${pwfile}"
    if ! pg_tool initdb -D "${tmp}" -U postgres --pwfile="${pwfile}" \
            --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >"${PG_BASE}/initdb.log" 2>&1; then
        rm -f "${pwfile}"
        tail -n 30 "${PG_BASE}/initdb.log" >&2 || true
        rm -rf "${tmp}"
        die "initdb failed (log: ${PG_BASE}/initdb.log)"
    fi
    rm -f "${pwfile}"
    printf "\n# OSL test settings\ninclude_if_exists = 'osl_provision.conf'\n" >>"${tmp}/postgresql.conf"
    mv "${tmp}" "${PG_DATA}"
}

start_server() {
    drop_stale_pidfile
    # Something else on our port (another checkout, another cluster)? Say so clearly.
    if "${PG_BINDIR}/pg_isready" -q -h "${PG_LISTEN}" -p "${PG_PORT}" -t 2 >/dev/null 2>&1; then
        die "port ${PG_LISTEN}:${PG_PORT} is already served by another PostgreSQL; set OSL_PG_PORT to a free port"
    fi
    write_conf
    log "starting PostgreSQL ${PG_MAJOR} on ${PG_LISTEN}:${PG_PORT} (log: ${PG_LOG})"
    if (( EUID == 0 )); then
        touch "${PG_LOG}" && chown "${PG_OS_USER}:" "${PG_LOG}"
    fi
    # 9>&-: the postmaster must not inherit (and so hold forever) our flock fd.
    if ! pg_tool pg_ctl start -D "${PG_DATA}" -l "${PG_LOG}" -w -t "${READY_TIMEOUT}" -s \
            >/dev/null 2>&1 9>&-; then
        log "server did not start; last lines of ${PG_LOG}:"
        tail -n 25 "${PG_LOG}" >&2 || true
        die "PostgreSQL failed to start"
    fi
}

wait_ready() {
    local deadline=$(( SECONDS + READY_TIMEOUT ))
    until is_ready; do
        if (( SECONDS >= deadline )); then
            log "server not ready after ${READY_TIMEOUT}s; last lines of ${PG_LOG}:"
            tail -n 25 "${PG_LOG}" >&2 || true
            die "PostgreSQL is not accepting connections on ${PG_LISTEN}:${PG_PORT}"
        fi
        sleep 0.2
    done
}

# ------------------------------------------------------------ roles/databases

provision_sql() {
    local dbs="" d
    for d in "${APP_DBS[@]}"; do dbs+="('${d}','${APP_ROLE}'),"; done
    dbs+="('${MARQUEZ_DB}','${MARQUEZ_ROLE}')"
    cat <<EOF
\\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r, p)
  FROM (VALUES ('${APP_ROLE}','${APP_PASSWORD}'), ('${MARQUEZ_ROLE}','${MARQUEZ_PASSWORD}')) AS v(r, p)
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\\gexec
SELECT format('CREATE DATABASE %I OWNER %I', d, o)
  FROM (VALUES ${dbs}) AS v(d, o)
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', d, o)
  FROM (VALUES ${dbs}) AS v(d, o)
  JOIN pg_database ON datname = d
 WHERE pg_get_userbyid(datdba) <> o
\\gexec
\\connect ${APP_SCHEMA_DB}
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', '${APP_SCHEMA}', '${APP_ROLE}')
 WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '${APP_SCHEMA}')
\\gexec
EOF
}

provision() {
    provision_sql | pg_tool psql -X -q -h "${PG_SOCK}" -p "${PG_PORT}" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null \
        || die "creating roles/databases failed"
}

# ------------------------------------------------------------------- commands

cmd_start() {
    ensure_binaries
    ensure_os_user
    ensure_dirs
    # Serialise concurrent invocations (e.g. parallel test workers).
    exec 9>>"${PG_LOCK}"
    flock -w 120 9 || die "timed out waiting for ${PG_LOCK}"

    if is_running; then
        local running_port
        running_port="$(pidfile_field 4)"
        if [[ -n "${running_port}" && "${running_port}" != "${PG_PORT}" ]]; then
            die "server already running on port ${running_port}, not ${PG_PORT}; run '$0 stop' first"
        fi
        wait_ready
        log "already running (pid $(pidfile_field 1)) on ${PG_LISTEN}:${PG_PORT}"
    else
        init_cluster
        start_server
        wait_ready
        log "ready"
    fi
    provision
    url
}

cmd_stop() {
    if ! [[ -x "${PG_BINDIR}/pg_ctl" ]] || ! is_running; then
        log "not running"
        return 0
    fi
    log "stopping PostgreSQL (pid $(pidfile_field 1))"
    pg_tool pg_ctl stop -D "${PG_DATA}" -m fast -w -t "${READY_TIMEOUT}" -s >/dev/null \
        || die "pg_ctl stop failed; see ${PG_LOG}"
    log "stopped"
}

cmd_status() {
    if [[ -x "${PG_BINDIR}/pg_ctl" ]] && is_running; then
        local state=ready
        is_ready || state="not ready"
        echo "running (pid $(pidfile_field 1), ${state}) on ${PG_LISTEN}:$(pidfile_field 4), data ${PG_DATA}"
        return 0
    fi
    if [[ -f "${PG_DATA}/PG_VERSION" ]]; then
        echo "stopped (data ${PG_DATA})"
    else
        echo "not initialised (data ${PG_DATA})"
    fi
    return 3
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) url ;;
    -h|--help|help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (expected start|stop|status|url)" ;;
esac
