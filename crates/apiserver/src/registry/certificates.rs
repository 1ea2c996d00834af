//! certificates.k8s.io CertificateSigningRequests (upstream `pkg/registry/certificates`): the
//! spec is required on create and frozen afterwards — the approver trusts `spec.username` and
//! `spec.groups`, which the HTTP layer stamps with the requester (`crate::auth::requester`) — and
//! `kubectl get csr` prints upstream's columns (signer, requestor, condition).

use ledge_api::Pointer as _;
use ledge_api::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use super::generic::required;
use crate::table::{self, Column, col};

/// The CSR strategy.
pub struct Csrs;

/// Upstream `extractCSRStatus`: the decisive condition, or Pending, plus Issued.
fn condition(obj: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(conditions) = obj.at("/status/conditions").and_then(Value::as_array) {
        for c in conditions {
            let decided = c.get("status").and_then(Value::as_str).unwrap_or("True") == "True";
            match c.get("type").and_then(Value::as_str) {
                Some(t @ ("Approved" | "Denied" | "Failed")) if decided => parts.push(t),
                _ => {}
            }
        }
    }
    if parts.is_empty() {
        parts.push("Pending");
    }
    let issued = obj
        .at("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if issued {
        parts.push("Issued");
    }
    parts.join(",")
}

impl Strategy for Csrs {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = Vec::new();
        match old {
            None => {
                for field in ["request", "signerName"] {
                    let present = obj
                        .at(&format!("/spec/{field}"))
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty());
                    if !present {
                        causes.push(required(&format!("spec.{field}")));
                    }
                }
                let usages = obj
                    .at("/spec/usages")
                    .and_then(Value::as_array)
                    .is_some_and(|u| !u.is_empty());
                if !usages {
                    causes.push(required("spec.usages"));
                }
            }
            Some(old) if obj.get("spec") != old.get("spec") => causes.push(StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "spec: Forbidden: the spec of a certificate signing request is immutable"
                    .into(),
                field: "spec".into(),
            }),
            Some(_) => {}
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            table::AGE,
            col(
                "SignerName",
                "string",
                "The signer the certificate is requested from.",
            ),
            col(
                "Requestor",
                "string",
                "The user who asked for the certificate.",
            ),
            col(
                "RequestedDuration",
                "string",
                "The validity period asked for.",
            ),
            col(
                "Condition",
                "string",
                "Approved, Denied, Failed or Pending; Issued once signed.",
            ),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let text = |p: &str| match table::text(obj, p) {
            "" => json!("<none>"),
            s => json!(s),
        };
        let duration = match table::path(obj, ".spec.expirationSeconds").and_then(Value::as_i64) {
            Some(secs) => json!(table::human_duration(secs)),
            None => json!("<none>"),
        };
        vec![
            table::age(obj),
            text(".spec.signerName"),
            text(".spec.username"),
            duration,
            json!(condition(obj)),
        ]
    }

    fn default_age(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_column_reads_like_upstream() {
        assert_eq!(condition(&json!({})), "Pending");
        let approved = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        assert_eq!(condition(&approved), "Approved");
        let issued = json!({"status": {"certificate": "Y2VydA==", "conditions": [{"type": "Approved", "status": "True"}]}});
        assert_eq!(condition(&issued), "Approved,Issued");
        let denied = json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}});
        assert_eq!(condition(&denied), "Denied");
    }

    #[test]
    fn the_spec_is_required_then_frozen() {
        let csr =
            json!({"spec": {"request": "cg==", "signerName": "s", "usages": ["client auth"]}});
        assert!(Csrs.validate(&csr, None).is_empty());
        assert_eq!(Csrs.validate(&json!({"spec": {}}), None).len(), 3);
        let mut changed = csr.clone();
        changed["spec"]["username"] = json!("system:node:other");
        assert_eq!(Csrs.validate(&changed, Some(&csr)).len(), 1);
        let mut status_only = csr.clone();
        status_only["status"] = json!({"certificate": "x"});
        assert!(Csrs.validate(&status_only, Some(&csr)).is_empty());
    }
}
