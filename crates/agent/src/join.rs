//! Joining a cluster, K3s' way with upstream's certificate API:
//!
//! 1. fetch `/cacerts` over a connection that trusts nothing, and accept it only if its sha256 is
//!    the hash pinned in the join token — from then on it is the only root trusted;
//! 2. generate a P-256 key and a PKCS#10 request for `CN=system:node:<name>, O=system:nodes`;
//! 3. create a `certificates.k8s.io/v1` CSR (signer `kube-apiserver-client-kubelet`) as the
//!    bootstrap token user, and wait — bounded, saying so — for the server to approve and sign it;
//! 4. store CA, key and certificate in the data dir ([`crate::files`]).
//!
//! A data dir that already holds credentials is reused and the token is not needed.

use std::time::{Duration, Instant};

use base64::Engine as _;
use ledge_api::Pointer as _;
use ledge_controller::{Client, Kind};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::backoff::{retry, sleep};
use crate::client::{Credentials as Auth, HttpClient, Trust};
use crate::error::AgentError;
use crate::files::{self, Credentials};
use crate::token::{JoinToken, ca_hash};
use crate::{AgentOptions, NODE_USER_PREFIX, NODES_GROUP};

/// certificates.k8s.io/v1 CertificateSigningRequest.
pub const CSR: Kind = Kind::new(
    "certificates.k8s.io",
    "v1",
    "certificatesigningrequests",
    "CertificateSigningRequest",
    false,
);
/// The signer of node client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How often the CSR is looked at while waiting.
const POLL: Duration = Duration::from_millis(500);
/// How often the wait is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The user a certificate names (its CN).
pub fn certificate_user(cert_pem: &str) -> Result<String, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, cert) =
        X509Certificate::from_der(&pem.contents).map_err(|e| format!("not a certificate: {e}"))?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .ok_or_else(|| "the certificate names no user".to_string())
}

/// The node's credentials: from the data dir, or by joining with the token.
pub async fn credentials(
    opts: &AgentOptions,
    name: &str,
    cancel: &CancellationToken,
) -> Result<Credentials, AgentError> {
    let token = opts.token.as_deref().map(JoinToken::parse).transpose()?;
    if let Some(creds) = files::load(&opts.data_dir)? {
        let user = certificate_user(&creds.cert_pem).map_err(AgentError::Certificate)?;
        let wanted = format!("{NODE_USER_PREFIX}{name}");
        if user != wanted {
            return Err(AgentError::OtherNode {
                dir: opts.data_dir.clone(),
                found_name: user
                    .strip_prefix(NODE_USER_PREFIX)
                    .unwrap_or(&user)
                    .to_string(),
                found: user,
                wanted: name.to_string(),
            });
        }
        if let Some(t) = &token
            && t.verify_ca(creds.ca_pem.as_bytes()).is_err()
        {
            return Err(AgentError::OtherCluster {
                dir: opts.data_dir.clone(),
                stored: ca_hash(creds.ca_pem.as_bytes()),
                pinned: t.ca_hash.clone(),
            });
        }
        tracing::info!(
            dir = %files::pki_dir(&opts.data_dir).display(),
            "using the stored node certificate (no join token needed)"
        );
        return Ok(creds);
    }
    let token = token.ok_or_else(|| AgentError::NoToken {
        dir: opts.data_dir.clone(),
    })?;
    let ca_pem = fetch_ca(&opts.servers, &token, cancel).await?;
    let client = HttpClient::for_servers(
        &opts.servers,
        Trust::Roots(&ca_pem),
        Auth::Bearer(token.bearer()),
    )?;
    let (key_pem, request_pem) = make_request(name)?;
    let csr_name = create_csr(&client, &request_pem, cancel).await?;
    let cert_pem = wait_for_certificate(&client, &csr_name, opts.csr_timeout, cancel).await?;
    let creds = Credentials {
        ca_pem,
        cert_pem,
        key_pem,
    };
    files::store(&opts.data_dir, &creds)?;
    tracing::info!(
        csr = %csr_name,
        dir = %files::pki_dir(&opts.data_dir).display(),
        "node certificate stored"
    );
    Ok(creds)
}

/// Fetch the CA from an unverified connection and check it against the token.
async fn fetch_ca(
    servers: &[String],
    token: &JoinToken,
    cancel: &CancellationToken,
) -> Result<String, AgentError> {
    // Any server will do: they share the CA.
    let anonymous = HttpClient::for_servers(servers, Trust::Unverified, Auth::Anonymous)?;
    let fetched = retry("fetching the cluster CA", cancel, || async {
        anonymous
            .get_bytes("/cacerts")
            .await
            .map_err(ledge_api::ApiError::from)
    })
    .await
    .map_err(|e| {
        AgentError::api(
            format!(
                "cannot fetch the cluster CA from {}/cacerts",
                anonymous.url()
            ),
            e,
        )
    })?
    .ok_or(AgentError::Cancelled)?;
    token.verify_ca(&fetched)?;
    let pem = String::from_utf8(fetched.to_vec())
        .map_err(|_| AgentError::Certificate("the cluster CA is not PEM text".into()))?;
    tracing::info!(server = %anonymous.url(), sha256 = %token.ca_hash, "the server's CA matches the join token");
    Ok(pem)
}

/// A fresh P-256 key and a request for this node's client certificate, both PEM.
pub fn make_request(node: &str) -> Result<(String, String), AgentError> {
    let cert_err = |e: rcgen::Error| AgentError::Certificate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{NODE_USER_PREFIX}{node}"));
    dn.push(DnType::OrganizationName, NODES_GROUP);
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(cert_err)?;
    Ok((key.serialize_pem(), request))
}

/// The error to stop with when the bootstrap token is not accepted.
fn refused(e: ledge_api::ApiError, action: &str) -> AgentError {
    if e.code == 401 {
        AgentError::TokenRefused(e)
    } else {
        AgentError::api(action, e)
    }
}

async fn create_csr(
    client: &HttpClient,
    request_pem: &str,
    cancel: &CancellationToken,
) -> Result<String, AgentError> {
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(request_pem),
            "signerName": KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    });
    let action = "cannot request a node certificate";
    let created = retry("requesting a node certificate", cancel, || {
        client.create(&CSR, None, body.clone())
    })
    .await
    .map_err(|e| refused(e, action))?
    .ok_or(AgentError::Cancelled)?;
    let name = created
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    tracing::info!(csr = %name, "requested a node certificate; waiting for the server to sign it");
    Ok(name)
}

/// The message of a `True` condition of this type, if there is one.
fn condition(csr: &Value, kind: &str) -> Option<String> {
    csr.at("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some(kind)
                && c.get("status").and_then(Value::as_str).unwrap_or("True") == "True"
        })
        .map(|c| {
            c.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
}

async fn wait_for_certificate(
    client: &HttpClient,
    name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, AgentError> {
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        match client.get(&CSR, None, name).await {
            Ok(Some(csr)) => {
                if let Some(cert) = csr
                    .at("/status/certificate")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                {
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(cert)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            AgentError::Certificate(format!(
                                "the certificate of {name} is not base64 PEM"
                            ))
                        })?;
                    return Ok(pem);
                }
                for (kind, how) in [("Denied", "denied"), ("Failed", "failed")] {
                    if let Some(message) = condition(&csr, kind) {
                        return Err(AgentError::CsrRejected {
                            name: name.to_string(),
                            how,
                            message,
                        });
                    }
                }
            }
            Ok(None) => {
                return Err(AgentError::api(
                    format!("certificate signing request {name} vanished"),
                    ledge_api::ApiError::new(404, "NotFound", "deleted while waiting"),
                ));
            }
            Err(e) if crate::client::retryable(&e) => {
                tracing::warn!(
                    "cannot check certificate signing request {name}: {}",
                    e.message
                );
            }
            Err(e) => {
                return Err(refused(
                    e,
                    &format!("cannot read certificate signing request {name}"),
                ));
            }
        }
        if started.elapsed() >= timeout {
            return Err(AgentError::CsrTimeout {
                name: name.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            tracing::info!(
                csr = %name,
                waited_s = started.elapsed().as_secs(),
                "still waiting for the node certificate to be approved and signed"
            );
        }
        if !sleep(cancel, POLL).await {
            return Err(AgentError::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_node_and_its_group() -> Result<(), Box<dyn std::error::Error>> {
        let (key, request) = make_request("edge-1")?;
        assert!(key.contains("PRIVATE KEY"));
        let (_, pem) = x509_parser::pem::parse_x509_pem(request.as_bytes())?;
        assert_eq!(pem.label, "CERTIFICATE REQUEST");
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)?;
        let subject = &req.certification_request_info.subject;
        let cn: Vec<_> = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let o: Vec<_> = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(cn, vec!["system:node:edge-1"]);
        assert_eq!(o, vec!["system:nodes"]);
        Ok(())
    }

    #[test]
    fn refusals_name_the_token() {
        let e = refused(
            ledge_api::ApiError::new(401, "Unauthorized", "Unauthorized"),
            "x",
        );
        let text = e.to_string();
        assert!(text.contains("401 Unauthorized"), "{text}");
        let e = refused(ledge_api::ApiError::new(403, "Forbidden", "no"), "doing x");
        assert_eq!(e.to_string(), "doing x: 403 Forbidden: no");
    }
}
