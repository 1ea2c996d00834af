//! `/openapi/v2` as the protobuf document (gnostic `openapi.v2.Document`) kubectl 1.27–1.29 ask
//! for before `kubectl apply`: each resource's PATCH operation names its group-version-kind and
//! the `fieldValidation` query parameter, so kubectl leaves field validation to the server.
//! No definitions are published (the schemas are in the v3 documents, `super`), so kubectl
//! versions that read only v2 compute strategic merge patches from their compiled-in types.

use crate::registry::Registry;

/// The response media type (kubectl asks with `...spec.v2@v1.0+protobuf`; Go's MIME parser
/// rejects the `@`, so upstream answers with a dot).
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (string, bytes or embedded message).
fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, (u64::from(number) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn message(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut m = Vec::new();
    build(&mut m);
    m
}

fn query_parameter(name: &str) -> Vec<u8> {
    // ParametersItem.parameter(1) → Parameter.non_body_parameter(2) →
    // NonBodyParameter.query_parameter_sub_schema(3) → {in(2), name(4), type(6)}.
    let sub = message(|m| {
        field(m, 2, b"query");
        field(m, 4, name.as_bytes());
        field(m, 6, b"string");
    });
    let non_body = message(|m| field(m, 3, &sub));
    let parameter = message(|m| field(m, 2, &non_body));
    message(|m| field(m, 1, &parameter))
}

fn vendor_extension(name: &str, yaml: &str) -> Vec<u8> {
    // NamedAny{name(1), value(2): Any{yaml(2)}}
    let any = message(|m| field(m, 2, yaml.as_bytes()));
    message(|m| {
        field(m, 1, name.as_bytes());
        field(m, 2, &any);
    })
}

/// Encode the document for every served resource.
pub fn document(reg: &Registry) -> Vec<u8> {
    let mut paths = Vec::new();
    for r in reg.all() {
        let base = if r.def.group.is_empty() {
            format!("/api/{}", r.def.version)
        } else {
            format!("/apis/{}/{}", r.def.group, r.def.version)
        };
        let ns = if r.def.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = format!(
            "group: \"{}\"\nkind: {}\nversion: {}\n",
            r.def.group, r.def.kind, r.def.version
        );
        let operation = message(|m| {
            field(
                m,
                5,
                format!("patch{}{}", r.def.group.replace('.', ""), r.def.kind).as_bytes(),
            );
            for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
                field(m, 8, &query_parameter(p));
            }
            field(m, 13, &vendor_extension("x-kubernetes-action", "patch\n"));
            field(
                m,
                13,
                &vendor_extension("x-kubernetes-group-version-kind", &gvk),
            );
        });
        let path_item = message(|m| field(m, 8, &operation));
        let named = message(|m| {
            field(
                m,
                1,
                format!("{base}{ns}/{}/{{name}}", r.def.plural).as_bytes(),
            );
            field(m, 2, &path_item);
        });
        field(&mut paths, 2, &named);
    }
    let info = message(|m| {
        field(m, 1, b"Kubernetes");
        field(m, 2, b"v1.32.0");
    });
    message(|m| {
        field(m, 1, b"2.0");
        field(m, 2, &info);
        field(m, 8, &paths);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_like_protobuf() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut f = Vec::new();
        field(&mut f, 1, b"2.0");
        assert_eq!(f, [0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn document_names_every_resource() {
        let doc = document(&Registry::with_builtins());
        let text = String::from_utf8_lossy(&doc);
        assert!(text.contains("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"));
        assert!(text.contains("fieldValidation"));
        assert!(text.contains("kind: Deployment"));
    }
}
