# Shared by the provisioning scripts (sourced, not run).

# A private, cacheable Go environment under $1 (GOPATH, GOMODCACHE, GOCACHE), the same for
# every Go build of the project so they share downloads and build cache. -modcacherw keeps
# the module cache deletable with `rm -rf`; GOTOOLCHAIN=local stops go from silently
# downloading another toolchain. GOPROXY: Go's default module proxy unless the caller set one.
use_project_go_env() {
  export GOPATH="$1/path"
  export GOMODCACHE="$1/mod"
  export GOCACHE="$1/build"
  export GOFLAGS="-modcacherw -buildvcs=false"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  export CGO_ENABLED=0
  export GO111MODULE=on
}

# Whether pid $1 is a live process. `kill -0` also succeeds on a zombie, which this
# machine's PID 1 can leave behind for a while after a process exits.
pid_alive() {
  local state
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != Z && "${state}" != X ]]
}

# SIGTERM pid $1, wait up to $2 seconds for it to exit, then SIGKILL it. Logs with `log`.
stop_pid() {
  local pid="$1" timeout="$2"
  kill -TERM "${pid}" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while pid_alive "${pid}"; do
    if ((SECONDS >= deadline)); then
      log "pid ${pid} still running after ${timeout}s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      sleep 1
      return 0
    fi
    sleep 0.2
  done
}
