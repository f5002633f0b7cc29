#!/usr/bin/env bash
# Build (once) Jaeger v2 -- the Collector-based `jaeger` binary -- from Go modules, write its
# config, and optionally run it on loopback with in-memory storage.
#
#   scripts/provision_jaeger.sh [build]   -> last stdout line: path of the binary
#   scripts/provision_jaeger.sh config    -> last stdout line: path of the config file
#   scripts/provision_jaeger.sh start     -> start in the background, wait until the query
#                                            API answers; last stdout line: its base URL
#   scripts/provision_jaeger.sh stop      -> stop the instance started by `start`
#   scripts/provision_jaeger.sh status    -> "running <pid> <url>" (exit 0) or "stopped" (exit 1)
#   JAEGER_REBUILD=1 scripts/provision_jaeger.sh      -> force a rebuild
#
# Why this way: no GitHub downloads and no docker here; the Go module proxy is reachable.
# Jaeger's module path has no /v2, so the v2.x tags are not valid module versions; the release
# v2.13.0 and v1.76.0 are the same commit (63b27e18), and v1.76.0 is a proper module version.
# Later v2.x releases exist only as v2 tags (no v1.x tag on their commits), and pseudo-versions
# of those commits are refused by the module proxy this workplace reaches, so v1.76.0 is the
# newest v2 release we can build. Its go.mod has a replace directive, so a plain
# `go install .../cmd/jaeger@v1.76.0` is refused; instead a tiny wrapper module (go.mod below,
# same replace) requires it and `go build`s github.com/jaegertracing/jaeger/cmd/jaeger.
# The wrapper's go.sum starts as a copy of Jaeger's own go.sum, so every dependency is checked
# against the hashes upstream committed (the checksum database has no entries for several of
# the older OpenTelemetry Collector modules it needs).
#
# The UI: the jaeger-ui assets are a git submodule built with npm by upstream's Makefile and are
# not in the module zip, so this binary serves Jaeger's *placeholder* index.html at / (a page
# saying the UI was not embedded). The HTTP API (/api/services, /api/traces/{id},
# /api/traces?service=..., /api/v3/...) is complete; trace links to /trace/<id> resolve to the
# placeholder page.
#
# Everything lives under <repo>/.cache/ (git-ignored):
#   .cache/jaeger/<version>/src/{go.mod,go.sum}   wrapper module (go.mod from the heredoc below)
#   .cache/jaeger/<version>/jaeger                the binary  <- printed on stdout by `build`
#   .cache/jaeger/<version>/config.yaml           config (from the heredoc below)
#   .cache/jaeger/run/{jaeger.pid,jaeger.log}     the instance started by `start`
#   .cache/go/{mod,build,path}                    GOMODCACHE / GOCACHE / GOPATH for the build
# Cold build: ~4 min on 2 cores (about 40 s of module downloads, then 3-3.3 min compiling),
# peak ~2.3 GB RAM; ~85 MB binary. A second run with the binary present only prints the path.
# The binary is rebuilt when the build inputs below change (a stamp holds their sha256) or
# JAEGER_REBUILD=1. Log lines go to stderr; only the result goes to stdout.
#
# Ports (all loopback; each overridable by the environment variable read by the config):
#   JAEGER_QUERY_ENDPOINT       127.0.0.1:16686   UI + HTTP query API
#   JAEGER_QUERY_GRPC_ENDPOINT  127.0.0.1:16685   gRPC query API
#   JAEGER_OTLP_GRPC_ENDPOINT   127.0.0.1:14317   OTLP/gRPC in (not 4317: the Collector's)
#   JAEGER_OTLP_HTTP_ENDPOINT   127.0.0.1:14318   OTLP/HTTP in (not 4318)
#   JAEGER_METRICS_PORT         18888             Jaeger's own Prometheus metrics (not 8888)
set -euo pipefail

# ---- pinned versions (verified on the Go module proxy) ---------------------------------
JAEGER_VERSION="2.13.0"                 # the release (git tag v2.13.0)
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION="v1.76.0"         # module version of the same commit
JAEGER_MODULE_SUM="h1:sWCOOF1dr+NL0PLil7mFo3BqqQL8k4WiM7aguFbc14g="
JAEGER_COMMIT="63b27e1810a710ac54dc4522da0538e540bdc545"
JAEGER_COMMIT_DATE="2025-12-03T16:07:08Z"
JAEGER_PACKAGE="${JAEGER_MODULE}/cmd/jaeger"

# ---- paths (from the script location, not the cwd) ---------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
CACHE_ROOT="${REPO_ROOT}/.cache"
JAEGER_DIR="${CACHE_ROOT}/jaeger/${JAEGER_VERSION}"
GO_DIR="${CACHE_ROOT}/go"
BINARY="${JAEGER_DIR}/jaeger"
CONFIG="${JAEGER_DIR}/config.yaml"
STAMP="${JAEGER_DIR}/.build.sha256"
SRC_DIR="${JAEGER_DIR}/src"
RUN_DIR="${CACHE_ROOT}/jaeger/run"
PID_FILE="${RUN_DIR}/jaeger.pid"
LOG_FILE="${RUN_DIR}/jaeger.log"

QUERY_ENDPOINT="${JAEGER_QUERY_ENDPOINT:-127.0.0.1:16686}"
QUERY_URL="http://${QUERY_ENDPOINT}"
START_TIMEOUT="${JAEGER_START_TIMEOUT:-60}"   # seconds

# shellcheck source=scripts/lib/common.sh
source "${SCRIPT_DIR}/lib/common.sh"
log() { printf '[provision_jaeger] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- build inputs ------------------------------------------------------------------------
# The wrapper module. `go get` below adds the requirements that cmd/jaeger needs; minimal
# version selection makes them exactly the versions in Jaeger's own go.mod.
wrapper_gomod() {
  cat <<EOF
module example.invalid/otel-sqla-lineage/jaeger

go 1.24.6

require ${JAEGER_MODULE} ${JAEGER_MODULE_VERSION}

// Same replace as upstream's go.mod (the reason \`go install\` refuses the module).
replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
EOF
}

# What `jaeger version` reports (upstream's Makefile sets the same variables from git).
LDFLAGS="-s -w"
LDFLAGS+=" -X ${JAEGER_MODULE}/internal/version.latestVersion=v${JAEGER_VERSION}"
LDFLAGS+=" -X ${JAEGER_MODULE}/internal/version.commitSHA=${JAEGER_COMMIT}"
LDFLAGS+=" -X ${JAEGER_MODULE}/internal/version.date=${JAEGER_COMMIT_DATE}"

# ---- config ------------------------------------------------------------------------------
# A Jaeger v2 config is an OpenTelemetry Collector config. ${env:VAR:-default} is expanded by
# Jaeger at start-up (the shell leaves it alone: the heredoc is quoted).
config_yaml() {
  cat <<'EOF'
# Written by scripts/provision_jaeger.sh -- edit the heredoc there, not this file.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: ${env:JAEGER_METRICS_PORT:-18888}
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: ${env:JAEGER_QUERY_ENDPOINT:-127.0.0.1:16686}
    grpc:
      endpoint: ${env:JAEGER_QUERY_GRPC_ENDPOINT:-127.0.0.1:16685}
    # Do not trace Jaeger's own query handlers.
    enable_tracing: false

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:JAEGER_OTLP_GRPC_ENDPOINT:-127.0.0.1:14317}
      http:
        endpoint: ${env:JAEGER_OTLP_HTTP_ENDPOINT:-127.0.0.1:14318}

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

# Write the config only when its content changed (keeps the mtime of an unchanged file).
write_config() {
  mkdir -p "${JAEGER_DIR}"
  if [[ -f "${CONFIG}" ]] && cmp -s <(config_yaml) "${CONFIG}"; then
    return 0
  fi
  config_yaml > "${CONFIG}.tmp.$$"
  mv -f "${CONFIG}.tmp.$$" "${CONFIG}"
  log "config: ${CONFIG}"
}

# ---- build -------------------------------------------------------------------------------
wanted_sha="$({ wrapper_gomod; echo "${LDFLAGS}"; } | sha256sum | cut -d' ' -f1)"
is_current() {
  [[ -x "${BINARY}" && -z "${JAEGER_REBUILD:-}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${wanted_sha}" ]]
}

# Ensures the binary exists and is current; never prints to stdout.
ensure_built() {
  is_current && return 0

  local go_bin
  go_bin="$(command -v go || true)"
  if [[ -z "${go_bin}" ]]; then
    # Without go, an existing binary (e.g. stamp from another build) is still usable.
    if [[ -x "${BINARY}" && -z "${JAEGER_REBUILD:-}" ]]; then
      log "go not found; using the existing ${BINARY}"
      return 0
    fi
    die "'go' not found on PATH. Building Jaeger needs Go >= 1.24.6 (Go 1.26 is what the project uses). Install Go (https://go.dev/dl/ or 'apt-get install golang-go' if recent enough) and re-run."
  fi

  mkdir -p "${JAEGER_DIR}" "${GO_DIR}/mod" "${GO_DIR}/build" "${GO_DIR}/path"

  # Serialize concurrent runs (e.g. parallel test sessions): the second waits, then sees the binary.
  exec 9>"${JAEGER_DIR}/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  if is_current; then
    exec 9>&-
    return 0
  fi

  use_project_go_env "${GO_DIR}"  # shared with provision_otelcol.sh

  log "go: $("${go_bin}" version 2>/dev/null) (GOMODCACHE/GOCACHE under ${GO_DIR})"
  local start=${SECONDS}

  # 1. Jaeger's module itself (checked against the checksum database and the pinned hash).
  log "downloading ${JAEGER_MODULE}@${JAEGER_MODULE_VERSION} (= Jaeger v${JAEGER_VERSION})"
  local info mod_dir mod_sum
  info="$(cd "${JAEGER_DIR}" && "${go_bin}" mod download -json "${JAEGER_MODULE}@${JAEGER_MODULE_VERSION}")" \
    || die "go mod download ${JAEGER_MODULE}@${JAEGER_MODULE_VERSION} failed (is the Go module proxy reachable? GOPROXY=${GOPROXY:-go default})"
  mod_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"${info}")"
  mod_sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"${info}")"
  [[ -n "${mod_dir}" && -f "${mod_dir}/go.sum" ]] || die "unexpected 'go mod download' output: ${info}"
  [[ "${mod_sum}" == "${JAEGER_MODULE_SUM}" ]] \
    || die "${JAEGER_MODULE}@${JAEGER_MODULE_VERSION} has hash ${mod_sum}, expected ${JAEGER_MODULE_SUM}"

  # 2. The wrapper module, seeded with upstream's go.sum, then the requirements of cmd/jaeger.
  rm -rf "${SRC_DIR}"
  mkdir -p "${SRC_DIR}"
  wrapper_gomod > "${SRC_DIR}/go.mod"
  cp "${mod_dir}/go.sum" "${SRC_DIR}/go.sum"
  chmod u+w "${SRC_DIR}/go.sum"
  log "resolving the dependencies of ${JAEGER_PACKAGE} (wrapper module: ${SRC_DIR})"
  (cd "${SRC_DIR}" && "${go_bin}" get "${JAEGER_PACKAGE}@${JAEGER_MODULE_VERSION}" 2>&1 \
      | grep -v -e 'retracted by module author' -e 'to switch to the latest unretracted' \
               -e 'go get github.com/klauspost/compress@latest' >&2 || true)
  (cd "${SRC_DIR}" && "${go_bin}" list -deps "${JAEGER_PACKAGE}" >/dev/null) \
    || die "resolving the modules of ${JAEGER_PACKAGE} failed; see the messages above (${SRC_DIR})"

  # 3. Compile, then publish atomically (same filesystem) and write the stamp.
  log "building jaeger v${JAEGER_VERSION} (cold: ~3.5 min on 2 cores, ~2.3 GB RAM; warm Go cache: seconds)"
  (cd "${SRC_DIR}" && "${go_bin}" build -trimpath -ldflags "${LDFLAGS}" -o "${BINARY}.tmp" "${JAEGER_PACKAGE}") >&2 \
    || die "go build ${JAEGER_PACKAGE} failed; see the messages above (${SRC_DIR})"
  mv -f "${BINARY}.tmp" "${BINARY}"
  echo "${wanted_sha}" > "${STAMP}"
  log "built in $((SECONDS - start))s: $("${BINARY}" version 2>/dev/null | head -n1)"
  exec 9>&-
}

# ---- run ---------------------------------------------------------------------------------
running_pid() {
  local pid
  [[ -f "${PID_FILE}" ]] || return 1
  pid="$(cat "${PID_FILE}" 2>/dev/null || true)"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  pid_alive "${pid}" || return 1
  # Guard against a recycled pid: it must be our binary.
  [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null || echo "${BINARY}")" == "${BINARY}"* ]] || return 1
  echo "${pid}"
}

# The query API is up when / answers and /api/services returns a JSON object with "data".
query_ready() {
  curl -fsS -m 2 -o /dev/null "${QUERY_URL}/" 2>/dev/null || return 1
  curl -fsS -m 2 "${QUERY_URL}/api/services" 2>/dev/null | grep -q '^{.*"data"' || return 1
}

cmd_start() {
  command -v curl >/dev/null 2>&1 || die "'curl' is needed to check that Jaeger is up"
  ensure_built
  write_config
  mkdir -p "${RUN_DIR}"

  local pid
  if pid="$(running_pid)"; then
    log "already running (pid ${pid}), query at ${QUERY_URL}"
    echo "${QUERY_URL}"
    return 0
  fi
  rm -f "${PID_FILE}"
  if query_ready; then
    die "something else already answers at ${QUERY_URL}; stop it or set JAEGER_QUERY_ENDPOINT"
  fi

  log "starting ${BINARY} --config ${CONFIG} (log: ${LOG_FILE})"
  # setsid: its own session, so it outlives this script and ignores the caller's Ctrl-C.
  setsid "${BINARY}" --config "${CONFIG}" </dev/null >"${LOG_FILE}" 2>&1 &
  pid=$!
  echo "${pid}" > "${PID_FILE}"

  local deadline=$((SECONDS + START_TIMEOUT))
  until query_ready; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      rm -f "${PID_FILE}"
      log "jaeger exited during start-up; last lines of ${LOG_FILE}:"
      tail -n 30 "${LOG_FILE}" >&2 || true
      die "jaeger failed to start"
    fi
    if (( SECONDS >= deadline )); then
      log "no answer from ${QUERY_URL}/api/services after ${START_TIMEOUT}s; last lines of ${LOG_FILE}:"
      tail -n 30 "${LOG_FILE}" >&2 || true
      cmd_stop
      die "jaeger did not become ready"
    fi
    sleep 0.5
  done
  log "running (pid ${pid}), query at ${QUERY_URL}"
  echo "${QUERY_URL}"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "${PID_FILE}"
    log "not running"
    return 0
  fi
  log "stopping pid ${pid}"
  stop_pid "${pid}" 10
  rm -f "${PID_FILE}"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running ${pid} ${QUERY_URL}"
    return 0
  fi
  echo "stopped"
  return 1
}

case "${1:-build}" in
  build)  ensure_built; write_config; echo "${BINARY}" ;;
  config) write_config; echo "${CONFIG}" ;;
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  -h|--help|help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (build | config | start | stop | status)" ;;
esac
