#!/usr/bin/env bash
# Build (once) the Kubernetes v1.34.4 control-plane binaries used by the
# devcluster test harness: kube-apiserver, kube-controller-manager,
# kube-scheduler.  Sources come from the Go module proxy via the pinned
# module in devcluster/tools; binaries land in a version-keyed cache outside
# the repo so every checkout/worktree shares them:
#   ${SUMO_K8_CACHE:-$HOME/.cache/sumo-k8}/kube/v1.34.4/bin/
# If KUBE_BIN_DIR is set and already holds the binaries, nothing is built.
# Idempotent: existing binaries are kept. Exits non-zero on failure.
# Extra k8s.io/kubernetes/cmd/* names may be given as arguments, e.g.
#   devcluster/build.sh kubectl      (handy for poking at a running devcluster)
set -euo pipefail

KUBE_VERSION=v1.34.4
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SUMO_K8_CACHE:-$HOME/.cache/sumo-k8}"
BIN="${KUBE_BIN_DIR:-$CACHE/kube/$KUBE_VERSION/bin}"
CMDS=(kube-apiserver kube-controller-manager kube-scheduler "$@")

log() { echo "[devcluster/build] $*" >&2; }

missing=()
for c in "${CMDS[@]}"; do
  [[ -x "$BIN/$c" ]] || missing+=("$c")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "all binaries present in $BIN"
  exit 0
fi
if [[ -n "${KUBE_BIN_DIR:-}" ]]; then
  log "KUBE_BIN_DIR=$KUBE_BIN_DIR lacks: ${missing[*]}"
  exit 1
fi

command -v go >/dev/null || { log "go not found on PATH"; exit 1; }
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export GOFLAGS="-trimpath -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

# Same version variables hack/lib/version.sh stamps into release builds.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=34"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$HERE/tools"
if [[ ! -s go.sum ]]; then
  log "go.sum missing: running go mod tidy"
  go mod tidy
fi
pkgs=()
for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
tmp="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "building ${missing[*]} ($KUBE_VERSION) into $BIN (GOCACHE=$GOCACHE)"
start=$SECONDS
nice -n 10 go build -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"
for c in "${missing[@]}"; do mv -f "$tmp/$c" "$BIN/$c"; done
log "built in $((SECONDS - start))s:"
for c in "${CMDS[@]}"; do
  if [[ $c == kubectl ]]; then "$BIN/$c" version --client >&2; else "$BIN/$c" --version >&2; fi
done
