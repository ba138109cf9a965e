#!/usr/bin/env bash
# Installs the tools that render and validate the Kubernetes manifests, without any network access other
# than the Go module proxy:
#
#   kustomize    sigs.k8s.io/kustomize/kustomize/v5, built with `go install`
#   kubeconform  github.com/yannh/kubeconform/cmd/kubeconform, built with `go install`
#   schemas      standalone, strict JSON schemas for the built-in kinds, generated from the OpenAPI
#                document (api/openapi-spec/swagger.json) in the k8s.io/kubernetes module of the pinned
#                release; schemas for the custom resources (KEDA, Strimzi) are kept in deploy/schemas/.
#
# Everything lands in a cache outside the repository (BROADSHEET_TOOLS_CACHE, default
# ~/.cache/broadsheet), keyed by version, so a second run does nothing. On success the script prints
# shell assignments for the caller to read:
#
#   KUSTOMIZE=/…/kustomize
#   KUBECONFORM=/…/kubeconform
#   K8S_SCHEMAS=/…/k8s-schemas/v1.33.13
#
# Any failure stops the script with a message on stderr that says which step failed and why.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.1
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VERSION=v1.33.13

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${BROADSHEET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/broadsheet}
python=${PYTHON:-python3}

die() {
    echo "deploy/tools/install.sh: $*" >&2
    exit 1
}

command -v go >/dev/null 2>&1 \
    || die "'go' is not on PATH; the manifest tools are built from source with Go >= 1.22 (Debian: apt-get install golang-go)"
command -v "$python" >/dev/null 2>&1 || die "'$python' is not on PATH; it generates the Kubernetes schemas"

mkdir -p "$cache" || die "cannot create the tools cache $cache"
# Two test runs at once must not build into the same directory.
exec 9>"$cache/.install.lock"
flock 9 2>/dev/null || true

build() { # build NAME PACKAGE VERSION -> prints the binary path
    local name=$1 package=$2 version=$3
    local dir="$cache/bin/$name-$version"
    if [[ ! -x "$dir/$name" ]]; then
        local log work
        log=$(mktemp)
        work=$(mktemp -d)
        # Build outside the repository so that no go.mod or GOFLAGS of the caller plays a part.
        if ! (cd "$work" && GOBIN="$dir" GOFLAGS= go install "$package@$version") >"$log" 2>&1; then
            cat "$log" >&2
            rm -rf "$log" "$work"
            die "could not build $name ($package@$version) with $(go version); see the go output above"
        fi
        rm -rf "$log" "$work"
    fi
    "$dir/$name" version >/dev/null 2>&1 || "$dir/$name" -v >/dev/null 2>&1 \
        || die "$dir/$name was built but does not run"
    echo "$dir/$name"
}

schemas() { # generates the built-in kinds' schemas once per Kubernetes release -> prints the directory
    local out="$cache/k8s-schemas/$KUBERNETES_VERSION"
    if [[ ! -f "$out/.complete" ]]; then
        local modcache log
        modcache=$(mktemp -d)
        log=$(mktemp)
        # A throwaway module cache: only one JSON file of the module is needed, so nothing is kept.
        if ! GOMODCACHE="$modcache" GOFLAGS=-modcacherw \
            go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >"$log" 2>&1; then
            cat "$log" >&2
            rm -rf "$modcache" "$log"
            die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy (GOPROXY=$(go env GOPROXY))"
        fi
        local swagger="$modcache/k8s.io/kubernetes@$KUBERNETES_VERSION/api/openapi-spec/swagger.json"
        rm -rf "$out.tmp"
        if ! "$python" "$here/k8s_schemas.py" core "$swagger" "$out.tmp" >"$log" 2>&1; then
            cat "$log" >&2
            rm -rf "$modcache" "$log" "$out.tmp"
            die "could not generate the Kubernetes schemas from $swagger"
        fi
        rm -rf "$modcache" "$log" "$out"
        mv "$out.tmp" "$out"
        touch "$out/.complete"
    fi
    echo "$out"
}

kustomize=$(build kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION")
kubeconform=$(build kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")
k8s_schemas=$(schemas)

echo "KUSTOMIZE=$kustomize"
echo "KUBECONFORM=$kubeconform"
echo "K8S_SCHEMAS=$k8s_schemas"
