#!/usr/bin/env python3
"""Turn Kubernetes OpenAPI definitions into the standalone, strict JSON schemas kubeconform reads.

Two sources are understood:

* ``core SWAGGER.json OUTDIR`` reads the OpenAPI v2 document a Kubernetes release publishes
  (``api/openapi-spec/swagger.json``) and writes one file per top-level kind.
* ``crd CRD.yaml OUTDIR`` reads a CustomResourceDefinition and writes one file per served version.

Files are named the way kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template expects:
``deployment-apps-v1.json``, ``service-v1.json``, ``scaledobject-keda-v1alpha1.json``.

"Standalone" means every ``$ref`` is inlined, so each file validates on its own; "strict" means every
object that lists its properties refuses any other property (a misspelt field is an error, not a silent
no-op), unless the schema says the object is free-form (``x-kubernetes-preserve-unknown-fields``).

The core path uses only the standard library, so it runs with any Python 3; the CRD path needs PyYAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}
QUANTITY_REF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
DROPPED_KEYS = {"description", "example", "externalDocs"}


def file_name(kind: str, api_version: str) -> str:
    """The name kubeconform derives: lowercased kind, first label of the group, version."""
    group_parts = api_version.split("/")
    suffix = "-" + group_parts[0].split(".")[0].lower()
    if len(group_parts) > 1:
        suffix += "-" + group_parts[1].lower()
    return f"{kind.lower()}{suffix}.json"


def strictify(node: Any) -> Any:
    """Copy a schema without descriptions, closing every object that names its properties."""
    if isinstance(node, list):
        return [strictify(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return dict(INT_OR_STRING)
    out = {key: strictify(value) for key, value in node.items() if key not in DROPPED_KEYS}
    free_form = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not free_form:
        out["additionalProperties"] = False
    return out


class CoreInliner:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions

    def inline(self, node: Any, stack: tuple[str, ...] = ()) -> Any:
        if isinstance(node, list):
            return [self.inline(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            name = ref.removeprefix("#/definitions/")
            if name == QUANTITY_REF:
                return dict(QUANTITY)
            if name in stack:  # a recursive type: accept anything below the second visit
                return {}
            return self.inline(self.definitions[name], (*stack, name))
        return {key: self.inline(value, stack) for key, value in node.items()}


def pin_kind(schema: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    properties = schema.setdefault("properties", {})
    properties["kind"] = {"type": "string", "enum": [kind]}
    properties["apiVersion"] = {"type": "string", "enum": [api_version]}
    return schema


def write(outdir: Path, kind: str, api_version: str, schema: dict[str, Any]) -> Path:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
    path = outdir / file_name(kind, api_version)
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def core(swagger_path: Path, outdir: Path) -> int:
    swagger = json.loads(swagger_path.read_text(encoding="utf-8"))
    definitions: dict[str, Any] = swagger["definitions"]
    inliner = CoreInliner(definitions)
    outdir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, definition in sorted(definitions.items()):
        gvks = definition.get("x-kubernetes-group-version-kind") or []
        if len(gvks) != 1 or name.endswith("List"):
            continue  # shared types (DeleteOptions, WatchEvent) and lists are not manifests
        gvk = gvks[0]
        api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
        schema = strictify(inliner.inline(definition, (name,)))
        write(outdir, gvk["kind"], api_version, pin_kind(schema, gvk["kind"], api_version))
        written += 1
    return written


def crd(crd_path: Path, outdir: Path) -> int:
    import yaml  # only needed here; the core path runs on a bare interpreter

    outdir.mkdir(parents=True, exist_ok=True)
    written = 0
    for document in yaml.safe_load_all(crd_path.read_text(encoding="utf-8")):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        spec = document["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{spec['group']}/{version['name']}"
            schema = strictify(version["schema"]["openAPIV3Schema"])
            write(outdir, spec["names"]["kind"], api_version, pin_kind(schema, spec["names"]["kind"], api_version))
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["core", "crd"])
    parser.add_argument("input", type=Path)
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    count = core(args.input, args.outdir) if args.source == "core" else crd(args.input, args.outdir)
    if count == 0:
        print(f"no schema found in {args.input}", file=sys.stderr)
        return 1
    print(f"wrote {count} schemas to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
