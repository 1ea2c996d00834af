#!/usr/bin/env python3
"""Regenerate k8s-v1.32.json.gz: the upstream schemas of the built-in kinds ledge serves.

Run by hand (see README.md next to this file):

    python3 crates/apiserver/openapi/generate.py            # pip-downloads kubernetes-validate
    python3 crates/apiserver/openapi/generate.py --wheel kubernetes_validate-1.37.0-py3-none-any.whl

The source is the PyPI package `kubernetes-validate`, which ships upstream's definitions (with
descriptions and the x-kubernetes-* extensions) as JSON Schema for every release from 1.25 on.
This script keeps the definitions for the kinds in `crates/api/src/resource.rs` (BUILTINS), their
lists, autoscaling/v1 Scale, every meta/v1 type, and everything those reference; turns them back
into OpenAPI v3 `components.schemas` form (`#/components/schemas/...` refs, `allOf` around refs
with siblings, single `type` strings, no JSON-Schema-only `enum` on apiVersion/kind,
IntOrString with `format: int-or-string`); and adds the compact field table the
server's field validation walks. Output is deterministic (sorted keys, gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

K8S_VERSION = "1.32"
PACKAGE = "kubernetes-validate==1.37.0"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RESOURCE_RS = REPO / "crates" / "api" / "src" / "resource.rs"
OUTPUT = HERE / f"k8s-v{K8S_VERSION}.json.gz"

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
EXTRA_KINDS = [("autoscaling", "v1", "Scale")]

# Upstream's v3 writes these as `oneOf` without a top-level type (so `kubectl explain` shows
# `<IntOrString>` and `<Quantity>`), as the JSON Schema form does; IntOrString also has a format.
FORMATS = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString": "int-or-string"}

# Field table encoding, read by crates/apiserver/src/fieldcheck/shape.rs.
LEAF = 1


def builtin_kinds(path: Path) -> list[tuple[str, str, str]]:
    """(group, version, kind) of every BUILTINS entry (`b("apps", "Deployment", ...)`)."""
    text = path.read_text()
    start = text.index("const BUILTINS")
    found = re.findall(r'\bb\(\s*"([^"]*)",\s*"([^"]*)"', text[start:])
    if not found:
        sys.exit(f"no BUILTINS entries found in {path}")
    return [(group, "v1", kind) for group, kind in found]


def load_definitions(wheel: Path | None) -> dict:
    member = f"kubernetes_validate/kubernetes-json-schema/v{K8S_VERSION}.0-local/_definitions.json"
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, PACKAGE],
                check=True,
            )
            wheel = next(Path(tmp).glob("kubernetes_validate-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return json.loads(zf.read(member))["$defs"]


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def refs(schema, out: set[str]) -> None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                out.add(ref_name(value))
            elif key == "properties":
                # Property names are data (JSONSchemaProps has a property called "$ref").
                refs(list(value.values()), out)
            else:
                refs(value, out)
    elif isinstance(schema, list):
        for value in schema:
            refs(value, out)


def closure(roots: list[str], defs: dict) -> list[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in defs:
            sys.exit(f"definition {name} is referenced but missing")
        seen.add(name)
        found: set[str] = set()
        refs(defs[name], found)
        todo.extend(sorted(found - seen))
    return sorted(seen)


def to_v3(schema):
    """One JSON Schema node back in upstream's OpenAPI v3 shape."""
    if isinstance(schema, list):
        return [to_v3(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "enum":
            # Only apiVersion/kind carry an enum here, added by the JSON Schema conversion.
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            value = types[0] if len(types) == 1 else types
        elif key == "$ref":
            value = "#/components/schemas/" + ref_name(value)
        elif key == "properties":
            value = {k: to_v3(v) for k, v in value.items()}
        else:
            value = to_v3(value)
        out[key] = value
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def shape(schema, leaves: set[str]):
    """The field-table form of a v3 schema: 1 (leaf), a type name, ["o", {field: shape}],
    ["m", shape] (map values) or ["l", shape] (list items)."""
    if "allOf" in schema:
        return shape(schema["allOf"][0], leaves)
    if "$ref" in schema:
        name = ref_name(schema["$ref"])
        return LEAF if name in leaves else name
    if schema.get("type") == "array":
        return ["l", shape(schema["items"], leaves)] if "items" in schema else LEAF
    if "properties" in schema:
        return ["o", {k: shape(v, leaves) for k, v in schema["properties"].items()}]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return ["m", shape(extra, leaves)]
    # Scalars, and opaque objects (RawExtension, FieldsV1, apiextensions JSON) hold anything.
    return LEAF


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a downloaded kubernetes-validate wheel")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    defs = load_definitions(args.wheel)
    by_gvk = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            by_gvk.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)

    kinds = {}
    for group, version, kind in builtin_kinds(RESOURCE_RS) + EXTRA_KINDS:
        for k in (kind, kind + "List"):
            name = by_gvk.get((group, version, k))
            if name is None:
                if k == kind:
                    sys.exit(f"no upstream definition for {group}/{version} {k}")
                continue
            api_version = f"{group}/{version}" if group else version
            kinds[f"{api_version}/{k}"] = name

    roots = sorted(set(kinds.values()) | {n for n in defs if n.startswith(META)})
    names = closure(roots, defs)
    schemas = {}
    for name in names:
        schemas[name] = to_v3(defs[name])
        if name in FORMATS:
            schemas[name]["format"] = FORMATS[name]
    leaves = {n for n, s in schemas.items() if shape(s, set()) == LEAF}
    fields = {n: shape(s, leaves) for n, s in schemas.items() if n not in leaves}

    doc = {
        "version": f"v{K8S_VERSION}.0",
        "source": PACKAGE,
        "kinds": kinds,
        "fields": fields,
        "schemas": schemas,
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    data = gzip.compress(raw, compresslevel=9, mtime=0)
    args.output.write_bytes(data)
    print(f"{args.output}: {len(kinds)} kinds, {len(schemas)} schemas, "
          f"{len(raw)} bytes JSON, {len(data)} bytes gzip")


if __name__ == "__main__":
    main()
