//! Node client certificates: the approver and signer for `certificates.k8s.io/v1`
//! CertificateSigningRequests with signer `kubernetes.io/kube-apiserver-client-kubelet`
//! (upstream kube-controller-manager's `csrapproving` and `csrsigning` controllers).
//!
//! A CSR is auto-approved when its requester (stamped by `crate::auth::requester`) is a
//! bootstrap token user (`nodeclient`) or the very node the certificate names (`selfnodeclient`,
//! renewal), and its PKCS#10 request is a kubelet client request: CN `system:node:<name>`, O exactly
//! `system:nodes`, no subject alternative names, usages within digital signature, key encipherment
//! and client auth. An approved CSR (by us or by an administrator) is signed with the cluster CA
//! for a year; a request that cannot be signed gets a `Failed` condition. Anything else stays
//! pending. Approval and signing are two writes, as upstream's two controllers make.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{Datelike as _, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509CertificationRequest};

use crate::auth::bootstrap::{GROUP as BOOTSTRAPPERS, USER_PREFIX as BOOTSTRAP_USER_PREFIX};
use crate::cache::{Change, ChangeKind};
use crate::handlers::system_update;
use crate::handlers::write::Part;
use crate::object;
use crate::state::ApiState;

/// The signer of kubelet (agent) client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The group every node certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// The user name prefix of node certificates.
pub const NODE_USER_PREFIX: &str = "system:node:";

const PREFIX: &str = "/registry/certificates.k8s.io/certificatesigningrequests/";

/// Days a signed node certificate is valid (upstream `--cluster-signing-duration`, 8760h).
const VALIDITY_DAYS: i64 = 365;

/// Usages a kubelet client certificate may ask for.
const ALLOWED_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// Run the approver/signer until shutdown.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    super::follow(
        state,
        cancel,
        async |state, change: Arc<Change>| {
            if change.key.starts_with(PREFIX) && change.kind != ChangeKind::Deleted {
                reconcile(state, &change.object).await;
            }
        },
        async |state| {
            for csr in state.cache.list(PREFIX, None).items {
                reconcile(state, &csr).await;
            }
        },
    )
    .await;
}

/// The PKCS#10 request of a CSR, as a PEM string (`spec.request` is base64 of the PEM bytes).
fn request_pem(csr: &Value) -> Result<String, String> {
    let encoded = csr
        .at("/spec/request")
        .and_then(Value::as_str)
        .ok_or("spec.request is missing")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "spec.request is not a PEM text".to_string())
}

/// What a valid kubelet client request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct NodeClientRequest {
    /// `system:node:<name>`.
    pub user: String,
}

/// Check that a PEM request is a kubelet client request (upstream `ValidateKubeletClientCSR`),
/// with a valid self-signature.
pub fn inspect_request(pem: &str) -> Result<NodeClientRequest, String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("spec.request is not PEM: {e}"))?;
    if parsed.label != "CERTIFICATE REQUEST" && parsed.label != "NEW CERTIFICATE REQUEST" {
        return Err(format!(
            "spec.request holds a {:?} PEM block, not a CERTIFICATE REQUEST",
            parsed.label
        ));
    }
    let (_, req) = X509CertificationRequest::from_der(&parsed.contents)
        .map_err(|e| format!("spec.request is not a PKCS#10 request: {e}"))?;
    // rcgen checks the request's signature (proof that the requester holds the key).
    rcgen::CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| format!("the request cannot be used: {e}"))?;
    let subject = &req.certification_request_info.subject;
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let [cn] = cns.as_slice() else {
        return Err("the request must carry exactly one common name".into());
    };
    let name = cn
        .strip_prefix(NODE_USER_PREFIX)
        .ok_or_else(|| format!("common name {cn:?} does not start with {NODE_USER_PREFIX:?}"))?;
    if name.is_empty() {
        return Err("the common name names no node".into());
    }
    if orgs != [NODES_GROUP] {
        return Err(format!(
            "organization must be exactly [{NODES_GROUP}], got {orgs:?}"
        ));
    }
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext
                && san.general_names.iter().any(|n| {
                    matches!(
                        n,
                        GeneralName::DNSName(_)
                            | GeneralName::RFC822Name(_)
                            | GeneralName::IPAddress(_)
                            | GeneralName::URI(_)
                    )
                })
            {
                return Err(
                    "a node client certificate may not carry subject alternative names".into(),
                );
            }
        }
    }
    Ok(NodeClientRequest {
        user: (*cn).to_string(),
    })
}

fn has_condition(csr: &Value, kind: &str) -> bool {
    csr.at("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str).unwrap_or("True") == "True"
            })
        })
}

fn strings(csr: &Value, pointer: &str) -> Vec<String> {
    csr.at(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the CSR may be auto-approved; `Ok` holds the approval message, `Err` why not.
pub fn approval(csr: &Value) -> Result<&'static str, String> {
    let signer = csr.at("/spec/signerName").and_then(Value::as_str);
    if signer != Some(KUBELET_CLIENT_SIGNER) {
        return Err(format!("signer {signer:?} is not auto-approved"));
    }
    let usages = strings(csr, "/spec/usages");
    if !usages.iter().any(|u| u == "client auth") {
        return Err("usages must include \"client auth\"".into());
    }
    if let Some(u) = usages
        .iter()
        .find(|u| !ALLOWED_USAGES.contains(&u.as_str()))
    {
        return Err(format!(
            "usage {u:?} is not allowed for a node client certificate"
        ));
    }
    let request = inspect_request(&request_pem(csr)?)?;
    let username = csr
        .at("/spec/username")
        .and_then(Value::as_str)
        .unwrap_or("");
    let groups = strings(csr, "/spec/groups");
    if username.starts_with(BOOTSTRAP_USER_PREFIX) && groups.iter().any(|g| g == BOOTSTRAPPERS) {
        return Ok("Auto approving kubelet client certificate after SubjectAccessReview.");
    }
    if username == request.user && groups.iter().any(|g| g == NODES_GROUP) {
        return Ok("Auto approving self kubelet client certificate after SubjectAccessReview.");
    }
    Err(format!(
        "requester {username:?} is neither a bootstrap token user nor the node {:?}",
        request.user
    ))
}

async fn reconcile(state: &Arc<ApiState>, csr: &Value) {
    if csr.at("/spec/signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER)
        || csr
            .at("/status/certificate")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty())
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed")
    {
        return;
    }
    let name = object::name(csr).to_string();
    if has_condition(csr, "Approved") {
        sign(state, &name, csr).await;
        return;
    }
    match approval(csr) {
        Ok(message) => {
            let condition = condition("Approved", "AutoApproved", message);
            write_status(state, &name, |status| {
                push_condition(status, condition.clone())
            })
            .await;
        }
        Err(why) => {
            tracing::debug!(csr = %name, %why, "leaving certificate signing request pending")
        }
    }
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = object::now_rfc3339();
    json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    })
}

fn push_condition(status: &mut serde_json::Map<String, Value>, condition: Value) {
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.push(condition);
    }
}

async fn sign(state: &Arc<ApiState>, name: &str, csr: &Value) {
    let signed = request_pem(csr).and_then(|pem| {
        let request = inspect_request(&pem)?;
        let today = Utc::now().date_naive();
        // A day of slack before now: edge devices' clocks drift.
        let from = today - Duration::days(1);
        let until = today + Duration::days(VALIDITY_DAYS);
        let ymd = |d: chrono::NaiveDate| (d.year(), d.month() as u8, d.day() as u8);
        state
            .ca
            .sign_client_request(&pem, &request.user, &[NODES_GROUP], ymd(from), ymd(until))
            .map_err(|e| e.to_string())
    });
    match signed {
        Ok(cert) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(cert);
            write_status(state, name, |status| {
                status.insert("certificate".into(), Value::String(encoded.clone()));
            })
            .await;
            tracing::info!(csr = %name, "signed a node client certificate");
        }
        Err(why) => {
            tracing::warn!(csr = %name, %why, "cannot sign certificate signing request");
            let condition = condition("Failed", "SignerValidationFailure", &why);
            write_status(state, name, |status| {
                push_condition(status, condition.clone())
            })
            .await;
        }
    }
}

/// Change `.status` of a CSR through the pipeline (retried on conflicts).
async fn write_status(
    state: &Arc<ApiState>,
    name: &str,
    mut change: impl FnMut(&mut serde_json::Map<String, Value>),
) {
    let Some(res) = state
        .registry
        .get("certificates.k8s.io", "v1", "certificatesigningrequests")
    else {
        return;
    };
    let result = system_update(state, &res, None, name, Part::Status, |current| {
        let mut next = current.clone();
        let status = next
            .as_object_mut()?
            .entry("status")
            .or_insert_with(|| json!({}));
        change(status.as_object_mut()?);
        Some(next)
    })
    .await;
    match result {
        Ok(_) => {}
        Err(e) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(csr = %name, error = %e, "cannot update certificate signing request")
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    /// A PKCS#10 request (rcgen keeps one value per attribute type, so one O at most).
    fn request(cn: &str, org: Option<&str>, sans: &[&str]) -> String {
        let key = KeyPair::generate().expect("key");
        let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        let request = params.serialize_request(&key).expect("request");
        request.pem().expect("pem")
    }

    fn csr(pem: &str, username: &str, groups: &[&str]) -> Value {
        json!({
            "metadata": {"name": "node-csr-x"},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": KUBELET_CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"],
                "username": username,
                "groups": groups,
            }
        })
    }

    #[test]
    fn a_bootstrap_users_node_request_is_approved() {
        let pem = request("system:node:edge-1", Some("system:nodes"), &[]);
        let c = csr(
            &pem,
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "system:authenticated"],
        );
        assert!(approval(&c).is_ok(), "{:?}", approval(&c));
        assert_eq!(
            inspect_request(&pem),
            Ok(NodeClientRequest {
                user: "system:node:edge-1".into()
            })
        );
    }

    #[test]
    fn a_node_may_renew_only_its_own_certificate() {
        let pem = request("system:node:edge-1", Some("system:nodes"), &[]);
        assert!(approval(&csr(&pem, "system:node:edge-1", &["system:nodes"])).is_ok());
        assert!(approval(&csr(&pem, "system:node:edge-2", &["system:nodes"])).is_err());
    }

    #[test]
    fn other_requests_stay_pending() {
        let boot = ["system:bootstrappers"];
        let admin = request("ledge-admin", Some("system:masters"), &[]);
        assert!(approval(&csr(&admin, "system:bootstrap:abcdef", &boot)).is_err());
        let masters = request("system:node:a", Some("system:masters"), &[]);
        assert!(approval(&csr(&masters, "system:bootstrap:abcdef", &boot)).is_err());
        let no_org = request("system:node:a", None, &[]);
        assert!(approval(&csr(&no_org, "system:bootstrap:abcdef", &boot)).is_err());
        let with_san = request("system:node:a", Some("system:nodes"), &["a.example"]);
        assert!(approval(&csr(&with_san, "system:bootstrap:abcdef", &boot)).is_err());
        let good = request("system:node:a", Some("system:nodes"), &[]);
        assert!(approval(&csr(&good, "alice", &["system:authenticated"])).is_err());
        let mut server_auth = csr(&good, "system:bootstrap:abcdef", &boot);
        server_auth["spec"]["usages"] = json!(["digital signature", "server auth"]);
        assert!(approval(&server_auth).is_err());
        let mut other_signer = csr(&good, "system:bootstrap:abcdef", &boot);
        other_signer["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client");
        assert!(approval(&other_signer).is_err());
        let mut garbage = csr(&good, "system:bootstrap:abcdef", &boot);
        garbage["spec"]["request"] = json!("bm90IGEgcmVxdWVzdA==");
        assert!(approval(&garbage).is_err());
    }

    #[test]
    fn the_ca_signs_what_was_approved() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ca = crate::auth::pki::ClusterCa::load_or_create(dir.path())?;
        let pem = request("system:node:edge-1", Some("system:nodes"), &[]);
        let cert = ca.sign_client_request(
            &pem,
            "system:node:edge-1",
            &[NODES_GROUP],
            (2025, 1, 1),
            (2026, 1, 1),
        )?;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes())?;
        let user = crate::auth::user_from_cert(der.as_ref()).ok_or("no user")?;
        assert_eq!(user.name, "system:node:edge-1");
        assert_eq!(user.groups, vec!["system:nodes".to_string()]);
        // What is not a request is refused.
        assert!(
            ca.sign_client_request("garbage", "u", &[], (2025, 1, 1), (2026, 1, 1))
                .is_err()
        );
        Ok(())
    }
}
