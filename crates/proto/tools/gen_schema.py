#!/usr/bin/env python3
"""Generate ledge-proto's message tables (crates/proto/src/schema/generated/).

The decoder in ledge-proto is driven by static tables: for every protobuf
message it can meet, the field numbers and wire types (from the upstream
`generated.proto`) joined with how Go's encoding/json prints the same Go
struct field (from the upstream `types.go`: JSON name, `omitempty` /
`omitzero`, pointer or value, embedded-inline). Both halves are needed: the
.proto file alone does not say which fields are pointers, which are inlined
into their parent in JSON, or which are omitted when empty.

Re-run after bumping the Kubernetes version (pinned below in K8S_TAG):

    git clone --depth 1 -b v0.36.3 https://github.com/kubernetes/api /tmp/k8s/api
    git clone --depth 1 -b v0.36.3 https://github.com/kubernetes/apimachinery /tmp/k8s/apimachinery
    python3 crates/proto/tools/gen_schema.py /tmp/k8s/api /tmp/k8s/apimachinery

The output is one field per line and deliberately left alone by rustfmt
(`#[rustfmt::skip] mod generated;`), so that a diff after a version bump shows
exactly the fields upstream added.

The script stops with an error on any Go/proto shape it does not understand,
rather than emitting a table that would decode silently wrong JSON.
"""

import os
import re
import sys

K8S_TAG = "v0.36.3"

# k8s.io/api packages whose registered kinds are decoded. Adding a package here
# (a beta version, say) is all it takes to support its kinds.
API_PACKAGES = [
    "admissionregistration/v1",
    "apps/v1",
    "authentication/v1",
    "authorization/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "batch/v1",
    "certificates/v1",
    "coordination/v1",
    "core/v1",
    "discovery/v1",
    "events/v1",
    "flowcontrol/v1",
    "networking/v1",
    "node/v1",
    "policy/v1",
    "rbac/v1",
    "resource/v1",
    "scheduling/v1",
    "storage/v1",
]

META = "k8s.io.apimachinery.pkg.apis.meta.v1"

# Messages with a hand-written decoder and a custom Go MarshalJSON.
SPECIAL = {
    META + ".Time": "Time",
    META + ".MicroTime": "MicroTime",
    META + ".Duration": "Duration",
    META + ".FieldsV1": "FieldsV1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
}

# meta/v1 kinds that every group version registers (metav1.AddToGroupVersion);
# DeleteOptions is the one typed clients send as a request body.
META_KINDS = ["DeleteOptions"]

SCALARS = {"string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "I32", "int64": "I64"}


def fail(msg):
    sys.exit("gen_schema: " + msg)


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def parse_proto(path):
    """Return (proto package, {message: [(label, type, name, number)]})."""
    text = strip_comments(open(path).read())
    pkg = re.search(r"^package ([\w.]+);", text, re.M).group(1)
    messages = {}
    for m in re.finditer(r"^message (\w+) \{(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).split(";"):
            line = line.strip()
            if not line:
                continue
            fm = re.fullmatch(r"(optional|repeated|required) ([\w.]+) (\w+) = (\d+)", line)
            mm = re.fullmatch(r"map<(\w+), ?([\w.]+)> (\w+) = (\d+)", line)
            if fm:
                fields.append((fm.group(1), fm.group(2), fm.group(3), int(fm.group(4))))
            elif mm:
                fields.append(("map", (mm.group(1), mm.group(2)), mm.group(3), int(mm.group(4))))
            else:
                fail(f"{path}: message {m.group(1)}: cannot parse {line!r}")
        messages[m.group(1)] = fields
    return pkg, messages


def qualify(pkg, ty):
    if ty in SCALARS:
        return ty
    if ty.startswith("."):
        return ty[1:]
    return pkg + "." + ty


GO_FIELD = re.compile(r"^\t(?:(\w+)\s+)?([\w.\[\]*]+)\s+`([^`]*)`")


def parse_go_package(path):
    """Return ({struct: [field dict]}, {named non-struct type: underlying})."""
    structs, named = {}, {}
    for name in sorted(os.listdir(path)):
        if not name.endswith(".go") or name.endswith("_test.go") or "generated" in name:
            continue
        text = open(os.path.join(path, name)).read()
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
            fields = []
            for line in m.group(2).split("\n"):
                if line.strip().startswith("//") or not line.strip():
                    continue
                fm = GO_FIELD.match(line)
                if not fm:
                    if "`" in line:
                        # Only an error if a decoded message uses this struct.
                        fields.append({"bad": f"{path}/{name}: cannot parse {line!r}"})
                    continue
                tags = dict(re.findall(r'(\w+):"([^"]*)"', fm.group(3)))
                fields.append({"name": fm.group(1), "type": fm.group(2), "tags": tags})
            structs[m.group(1)] = fields
        for m in re.finditer(r"^type (\w+) ([^\s{]+)\s*$", text, re.M):
            named[m.group(1)] = m.group(2)
    return structs, named


def parse_register(path):
    text = open(path).read()
    group = re.search(r'GroupName = "([^"]*)"', text).group(1)
    version = re.search(r'Version: "(\w+)"', text).group(1)
    block = re.search(r"AddKnownTypes\(SchemeGroupVersion,(.*?)\)\n", text, re.S).group(1)
    kinds = re.findall(r"&(\w+)\{\}", block)
    return (f"{group}/{version}" if group else version), kinds


class Gen:
    def __init__(self, api_dir, machinery_dir):
        self.protos = {}  # qualified message name -> fields
        self.go = {}  # proto package -> (structs, named)
        self.module = {}  # proto package -> rust module name
        dirs = [(os.path.join(api_dir, p), p.replace("/", "_")) for p in API_PACKAGES]
        dirs += [
            (os.path.join(machinery_dir, "pkg/apis/meta/v1"), "meta_v1"),
            (os.path.join(machinery_dir, "pkg/api/resource"), None),
            (os.path.join(machinery_dir, "pkg/util/intstr"), None),
            (os.path.join(machinery_dir, "pkg/runtime"), None),
        ]
        for d, module in dirs:
            pkg, messages = parse_proto(os.path.join(d, "generated.proto"))
            for msg, fields in messages.items():
                self.protos[pkg + "." + msg] = (pkg, fields)
            self.go[pkg] = parse_go_package(d)
            self.module[pkg] = module
        self.kinds = []
        for p in API_PACKAGES:
            api_version, kinds = parse_register(os.path.join(api_dir, p, "register.go"))
            pkg = "k8s.io.api." + p.replace("/", ".")
            for k in kinds:
                if self.go[pkg][0].get(k) is None:
                    print(f"skipping {api_version} {k}: not a struct ({self.go[pkg][1].get(k)})")
                    continue
                if pkg + "." + k not in self.protos:
                    fail(f"registered kind {api_version} {k} has no proto message")
                self.kinds.append((api_version, k, pkg + "." + k))
        self.reachable = {}
        roots = [q for _, _, q in self.kinds] + [META + "." + k for k in META_KINDS]
        for q in roots:
            self.visit(q)

    def go_struct(self, qname):
        pkg, _, name = qname.rpartition(".")
        structs, named = self.go[pkg]
        return structs.get(name), named.get(name)

    def visit(self, qname):
        """Compute the field table of a message and of all messages it uses."""
        if qname in self.reachable or qname in SPECIAL:
            return
        pkg, proto_fields = self.protos[qname]
        struct, underlying = self.go_struct(qname)
        if struct is None:
            fail(f"{qname}: no Go struct (underlying {underlying!r})")
        self.reachable[qname] = None  # break cycles while visiting
        by_number = {f[3]: f for f in proto_fields}
        seen, rows, json_names = set(), [], set()
        for gf in struct:
            if "bad" in gf:
                fail(gf["bad"])
            tags = gf["tags"]
            json_tag = tags.get("json")
            if "protobuf" not in tags:
                if gf["name"] is None and gf["type"].endswith("TypeMeta"):
                    continue  # kind/apiVersion come from the envelope
                fail(f"{qname}.{gf['name'] or gf['type']}: Go field without protobuf tag")
            pb = tags["protobuf"].split(",")
            number = int(pb[1])
            if number not in by_number:
                fail(f"{qname}: Go field {gf['name']} has protobuf number {number} missing in proto")
            label, ptype, pname, _ = by_number[number]
            seen.add(number)
            if json_tag is None or json_tag == "-":
                fail(f"{qname}.{pname}: no usable json tag")
            jparts = json_tag.split(",")
            jname, opts = jparts[0], set(jparts[1:])
            embedded = gf["name"] is None
            gotype = gf["type"]
            if jname == "" and embedded:
                shape = "Inline"
                if gotype.startswith("*"):
                    fail(f"{qname}.{pname}: embedded pointer")
            elif jname == "":
                jname = gf["name"]
            omit = "Zero" if "omitzero" in opts else "Empty" if "omitempty" in opts else "Never"
            if label == "map":
                key, val = ptype
                if key != "string":
                    fail(f"{qname}.{pname}: map key {key}")
                ty, target = self.type_of(pkg, val, qname, pname)
                shape = "Map"
            else:
                ty, target = self.type_of(pkg, ptype, qname, pname)
                if label == "repeated":
                    shape = "Rep"
                    if ty == "Bytes":
                        fail(f"{qname}.{pname}: repeated bytes")
                elif jname == "" or (embedded and json_tag in ("", ",inline")):
                    shape = "Inline"
                elif gotype.startswith("*"):
                    shape = "Ptr"
                else:
                    shape = "Val"
                if ty == "Bytes" and gotype != "[]byte":
                    fail(f"{qname}.{pname}: bytes field of Go type {gotype}")
            if shape == "Inline":
                jname = ""
                if not ty.startswith("Msg("):
                    fail(f"{qname}.{pname}: inline non-message")
            elif jname in json_names:
                fail(f"{qname}: duplicate JSON name {jname}")
            json_names.add(jname)
            rows.append((number, jname, shape, ty, omit, target))
        missing = set(by_number) - seen
        if missing:
            fail(f"{qname}: proto fields {sorted(missing)} have no Go field")
        self.reachable[qname] = rows
        # Go lets a shallower field shadow a promoted one; the decoder just
        # merges, so insist there is nothing to shadow.
        members = self.members(qname)
        if len(members) != len(set(members)):
            fail(f"{qname}: inlined JSON members collide: {sorted(members)}")

    def members(self, qname):
        """JSON member names of a message, with inlined structs expanded."""
        out = []
        for _, jname, shape, _, _, target in self.reachable.get(qname) or []:
            out += self.members(target) if shape == "Inline" else [jname]
        return out

    def type_of(self, pkg, ptype, qname, pname):
        """Return (Rust `Type` expression, qualified message name or None)."""
        if ptype in SCALARS:
            return SCALARS[ptype], None
        target = qualify(pkg, ptype)
        if target in SPECIAL:
            return SPECIAL[target], None
        if target not in self.protos:
            fail(f"{qname}.{pname}: unknown message {target}")
        struct, underlying = self.go_struct(target)
        if struct is None:
            # A named Go slice that go-to-protobuf wraps in a message
            # (authentication/v1 ExtraValue): JSON shows the bare list.
            inner = self.protos[target][1]
            if underlying == "[]string" and inner == [("repeated", "string", "items", 1)]:
                return "StrList", None
            fail(f"{target}: unsupported wrapper of {underlying}")
        self.visit(target)
        return f"Msg(&{self.rust_ref(pkg, target)})", target

    def rust_ref(self, from_pkg, target):
        tpkg, _, name = target.rpartition(".")
        return name if tpkg == from_pkg else f"super::{self.module[tpkg]}::{name}"

    def write(self, out_dir):
        header = (
            "// @generated by crates/proto/tools/gen_schema.py from k8s.io/api and\n"
            f"// k8s.io/apimachinery {K8S_TAG} (generated.proto + types.go). Do not edit.\n"
        )
        by_module = {}
        for qname, rows in self.reachable.items():
            pkg, _, name = qname.rpartition(".")
            by_module.setdefault(self.module[pkg], []).append((name, rows))
        for module, messages in sorted(by_module.items()):
            lines = [
                header,
                "use crate::schema::Omit::*;",
                "use crate::schema::Shape::*;",
                "use crate::schema::Type::*;",
                "use crate::schema::{Message, f};\n",
            ]
            for name, rows in sorted(messages):
                lines.append(f"pub(crate) static {name}: Message = Message {{")
                lines.append("    fields: &[")
                for number, jname, shape, ty, omit, _ in rows:
                    lines.append(f'        f({number}, "{jname}", {shape}, {ty}, {omit}),')
                lines.append("    ],")
                lines.append("};\n")
            text = "\n".join(lines)
            with open(os.path.join(out_dir, module + ".rs"), "w") as fh:
                fh.write(text.rstrip() + "\n")
        kinds = sorted((v, k, q) for v, k, q in self.kinds)
        lines = [
            header,
            "//! Message tables generated from upstream; see tools/gen_schema.py.\n",
            "#![allow(non_upper_case_globals)]\n",
        ]
        lines += [f"mod {module};" for module in sorted(by_module)]
        lines.append("\nuse crate::schema::Message;\n")
        lines.append("/// Registered kinds, sorted by (apiVersion, kind) for binary search.")
        lines.append("pub(crate) static KINDS: &[(&str, &str, &Message)] = &[")
        for v, k, q in kinds:
            pkg, _, name = q.rpartition(".")
            lines.append(f'    ("{v}", "{k}", &{self.module[pkg]}::{name}),')
        lines.append("];\n")
        lines.append("/// meta/v1 kinds registered in every group version.")
        lines.append("pub(crate) static META_KINDS: &[(&str, &Message)] = &[")
        for k in META_KINDS:
            lines.append(f'    ("{k}", &meta_v1::{k}),')
        lines.append("];")
        with open(os.path.join(out_dir, "mod.rs"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"{len(self.reachable)} messages, {len(kinds)} kinds, modules: {sorted(by_module)}")


def main():
    if len(sys.argv) != 3:
        fail("usage: gen_schema.py <k8s.io/api checkout> <k8s.io/apimachinery checkout>")
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "schema", "generated")
    os.makedirs(out_dir, exist_ok=True)
    Gen(sys.argv[1], sys.argv[2]).write(out_dir)


if __name__ == "__main__":
    main()
