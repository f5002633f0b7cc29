#!/usr/bin/env bash
# Build (once) a small OpenTelemetry Collector distribution, "otelcol-lineage", from Go
# modules with the OpenTelemetry Collector Builder (ocb), and print the binary's path.
#
#   scripts/provision_otelcol.sh            -> last stdout line: path of the binary
#   OTELCOL_REBUILD=1 scripts/provision_otelcol.sh   -> force a rebuild
#
# Why build it: no GitHub downloads and no docker here, and the prebuilt distributions
# cannot be `go install`ed (their go.mod files use replace directives). The Go module proxy
# is reachable, so ocb generates a tiny main package and `go build`s it.
#
# Everything lives under <repo>/.cache/ (git-ignored):
#   .cache/otelcol/<version>/manifest.yaml     builder manifest (generated from the heredoc below)
#   .cache/otelcol/<version>/bin/ocb           the builder itself
#   .cache/otelcol/<version>/src/              generated sources (main.go, components.go, go.mod)
#   .cache/otelcol/<version>/otelcol-lineage   the Collector binary  <- printed on stdout
#   .cache/go/{mod,build,path}                 GOMODCACHE / GOCACHE / GOPATH for the build
# A second run with the binary present does nothing but print the path. The binary is also
# rebuilt when the manifest below changes (a stamp holds its sha256) or OTELCOL_REBUILD=1.
# Log lines go to stderr; only the path goes to stdout.
set -euo pipefail

# ---- pinned versions (verified on the Go module proxy) ---------------------------------
# v0.162.0 is the newest release that builds from the Go module proxy: v0.163.0 and v0.164.0
# exist, but their otlpexporter/otlphttpexporter require go.opentelemetry.io/collector/
# internal/statusutil, whose zip the proxy refuses ("403 ... This module version is not
# available"), so `go mod tidy` fails. Re-check before bumping:
#   GOFLAGS=-mod=mod go mod download go.opentelemetry.io/collector/internal/statusutil@vX.Y.Z
OTELCOL_VERSION="0.162.0"              # cmd/builder and the v0.x component modules
OTELCOL_BETA_VERSION="v${OTELCOL_VERSION}"
OTELCOL_STABLE_VERSION="v1.68.0"       # stable confmap providers (released with v0.162.0)
BUILDER_MODULE="go.opentelemetry.io/collector/cmd/builder"
DIST_NAME="otelcol-lineage"

# ---- paths (from the script location, not the cwd) ---------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
CACHE_ROOT="${REPO_ROOT}/.cache"
OTELCOL_DIR="${CACHE_ROOT}/otelcol/${OTELCOL_VERSION}"
GO_DIR="${CACHE_ROOT}/go"
BINARY="${OTELCOL_DIR}/${DIST_NAME}"
MANIFEST="${OTELCOL_DIR}/manifest.yaml"
STAMP="${OTELCOL_DIR}/.manifest.sha256"
SRC_DIR="${OTELCOL_DIR}/src"
OCB="${OTELCOL_DIR}/bin/ocb"

# shellcheck source=scripts/lib/common.sh
source "${SCRIPT_DIR}/lib/common.sh"
log() { printf '[provision_otelcol] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- builder manifest ------------------------------------------------------------------
# Only what the lineage pipeline needs (see otel-collector-config.yaml): the OTLP receiver,
# memory_limiter + batch processors, OTLP gRPC/HTTP and debug exporters, the standard
# stable config providers, and the default (otelconf) telemetry for the Collector's own metrics.
manifest() {
  cat <<EOF
dist:
  module: example.invalid/otel-sqla-lineage/otelcol-lineage
  name: ${DIST_NAME}
  description: OpenTelemetry Collector for otel-sqla-lineage (OTLP in, Jaeger + lineage out)
  version: ${OTELCOL_VERSION}-lineage
  output_path: ${SRC_DIR}
  # no "go:" key: ocb uses the go found on PATH (checked below), so the manifest -- and its
  # stamp -- do not depend on where Go is installed.

conf_resolver:
  # Lets a bare \${VAR} in the config mean \${env:VAR}.
  default_uri_scheme: env

receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver ${OTELCOL_BETA_VERSION}
processors:
  - gomod: go.opentelemetry.io/collector/processor/memorylimiterprocessor ${OTELCOL_BETA_VERSION}
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor ${OTELCOL_BETA_VERSION}
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlpexporter ${OTELCOL_BETA_VERSION}
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter ${OTELCOL_BETA_VERSION}
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter ${OTELCOL_BETA_VERSION}

providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider ${OTELCOL_STABLE_VERSION}
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider ${OTELCOL_STABLE_VERSION}
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider ${OTELCOL_STABLE_VERSION}
  - gomod: go.opentelemetry.io/collector/confmap/provider/httpprovider ${OTELCOL_STABLE_VERSION}
  - gomod: go.opentelemetry.io/collector/confmap/provider/httpsprovider ${OTELCOL_STABLE_VERSION}

telemetry:
  gomod: go.opentelemetry.io/collector/service ${OTELCOL_BETA_VERSION}
  import: go.opentelemetry.io/collector/service/telemetry/otelconftelemetry
EOF
}

# ---- go toolchain ------------------------------------------------------------------------
GO_BIN="$(command -v go || true)"
if [[ -z "${GO_BIN}" ]]; then
  # Fast path still works without go: the binary is already there.
  if [[ -x "${BINARY}" && -z "${OTELCOL_REBUILD:-}" ]]; then
    echo "${BINARY}"
    exit 0
  fi
  die "'go' not found on PATH. Building the Collector needs Go >= 1.26 (the builder ${OTELCOL_BETA_VERSION} declares 'go 1.26.0'). Install Go (https://go.dev/dl/ or 'apt-get install golang-go' if recent enough) and re-run."
fi

wanted_sha="$(manifest | sha256sum | cut -d' ' -f1)"
is_current() {
  [[ -x "${BINARY}" && -z "${OTELCOL_REBUILD:-}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${wanted_sha}" ]]
}

# Fast path: nothing to do.
if is_current; then
  echo "${BINARY}"
  exit 0
fi

mkdir -p "${OTELCOL_DIR}/bin" "${GO_DIR}/mod" "${GO_DIR}/build" "${GO_DIR}/path"

# Serialize concurrent runs (e.g. parallel test sessions): the second waits, then sees the binary.
exec 9>"${OTELCOL_DIR}/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if is_current; then
  echo "${BINARY}"
  exit 0
fi

use_project_go_env "${GO_DIR}"

log "go: $("${GO_BIN}" version 2>/dev/null) (GOMODCACHE/GOCACHE under ${GO_DIR})"

# 1. The builder (ocb), same version as the components.
if [[ ! -x "${OCB}" ]]; then
  log "installing ${BUILDER_MODULE}@${OTELCOL_BETA_VERSION} -> ${OCB}"
  GOBIN="${OTELCOL_DIR}/bin.tmp" "${GO_BIN}" install "${BUILDER_MODULE}@${OTELCOL_BETA_VERSION}" >&2 \
    || die "go install ${BUILDER_MODULE}@${OTELCOL_BETA_VERSION} failed (is the Go module proxy reachable? GOPROXY=${GOPROXY:-go default})"
  mv -f "${OTELCOL_DIR}/bin.tmp/builder" "${OCB}"
  rmdir "${OTELCOL_DIR}/bin.tmp" 2>/dev/null || true
fi

# 2. The manifest.
manifest > "${MANIFEST}"
log "manifest: ${MANIFEST}"

# 3. Generate, fetch modules, compile. ocb writes the binary into output_path.
log "building ${DIST_NAME} ${OTELCOL_VERSION} (cold: ~1.5 min on 2 cores, ~0.6 GB RAM; warm Go cache: seconds)"
start=${SECONDS}
rm -rf "${SRC_DIR}"
"${OCB}" --config="${MANIFEST}" >&2 \
  || die "ocb failed; see the messages above (manifest: ${MANIFEST})"
[[ -x "${SRC_DIR}/${DIST_NAME}" ]] || die "ocb finished but ${SRC_DIR}/${DIST_NAME} is missing"

# Atomic publish (same filesystem), then the stamp.
mv -f "${SRC_DIR}/${DIST_NAME}" "${BINARY}"
echo "${wanted_sha}" > "${STAMP}"
log "built in $((SECONDS - start))s: $("${BINARY}" --version 2>&1 | head -n1)"

echo "${BINARY}"
