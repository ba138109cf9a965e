#!/usr/bin/env bash
# Renders the Kubernetes overlays and validates every resource offline, in strict mode (unknown fields and
# wrong types are errors; a kind without a schema is an error, not a skip).
#
#   deploy/tools/validate.sh              # both overlays
#   deploy/tools/validate.sh prod         # one overlay
#   deploy/tools/validate.sh - < x.yaml   # manifests from stdin
#
# The tools and the built-in kinds' schemas come from deploy/tools/install.sh; the custom resources'
# schemas (KEDA, Strimzi) from deploy/schemas/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
eval "$("$here/install.sh")"

template='{{ .ResourceKind }}{{ .KindSuffix }}.json'
validate() {
    "$KUBECONFORM" -strict -summary -output text \
        -schema-location "$K8S_SCHEMAS/$template" \
        -schema-location "$repo/deploy/schemas/$template" \
        -
}

if [[ "${1:-}" == "-" ]]; then
    validate
    exit
fi

status=0
for overlay in "${@:-dev prod}"; do
    for name in $overlay; do
        echo "== overlays/$name"
        "$KUSTOMIZE" build "$repo/deploy/k8s/overlays/$name" | validate || status=1
    done
done
exit $status
