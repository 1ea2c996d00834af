//! Who asked for a certificate. Upstream's CSR strategy overwrites `spec.username`, `spec.groups`,
//! `spec.uid` and `spec.extra` with the requesting user, so approvers can trust them (the
//! auto-approver in `crate::system::csr` does). ledge's generic pipeline does not carry the user,
//! so the HTTP layer stamps a CSR create body before it enters the pipeline; the stamped body is
//! re-encoded as JSON.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::User;
use crate::http::body;
use crate::http::request::{RequestInfo, Verb};

/// The group upstream adds to every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";

/// Whether a request creates a CertificateSigningRequest.
pub fn is_csr_create(info: &RequestInfo) -> bool {
    info.group == "certificates.k8s.io"
        && info.resource == "certificatesigningrequests"
        && info.subresource.is_none()
        && info.verb == Verb::Create
}

/// Record `user` as the requester in a CSR body. A body that does not decode to an object is
/// passed on untouched, for the pipeline to reject with its usual message.
pub fn stamp_csr(user: &User, headers: &mut HeaderMap, raw: Bytes) -> Bytes {
    let Ok(mut obj) = body::decode_object(&body::content_type(headers), &raw) else {
        return raw;
    };
    let Some(map) = obj.as_object_mut() else {
        return raw;
    };
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return raw;
    };
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.to_string());
    }
    spec.insert("username".into(), Value::String(user.name.clone()));
    spec.insert("groups".into(), json!(groups));
    spec.remove("uid");
    spec.remove("extra");
    let Ok(encoded) = serde_json::to_vec(&obj) else {
        return raw;
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Bytes::from(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_is_the_authenticated_user_whatever_the_body_says() {
        let user = User {
            name: "system:bootstrap:abcdef".into(),
            groups: vec!["system:bootstrappers".into()],
        };
        let mut headers = HeaderMap::new();
        let raw = Bytes::from_static(
            br#"{"metadata":{"name":"x"},"spec":{"username":"system:node:other","groups":["system:masters"],"uid":"1","request":"cg=="}}"#,
        );
        let out = stamp_csr(&user, &mut headers, raw);
        let obj: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(obj["spec"]["username"], "system:bootstrap:abcdef");
        assert_eq!(
            obj["spec"]["groups"],
            json!(["system:bootstrappers", "system:authenticated"])
        );
        assert_eq!(obj["spec"].get("uid"), None);
        assert_eq!(obj["spec"]["request"], "cg==");
    }

    #[test]
    fn garbage_is_passed_on() {
        let user = User {
            name: "u".into(),
            groups: vec![],
        };
        let mut headers = HeaderMap::new();
        let raw = Bytes::from_static(b"{not json");
        assert_eq!(stamp_csr(&user, &mut headers, raw.clone()), raw);
    }
}
