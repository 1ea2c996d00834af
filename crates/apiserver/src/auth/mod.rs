//! Authentication: who is calling. Client certificates signed by the cluster CA identify users
//! (CN = user, O = groups), as in Kubernetes; without one, a bootstrap token in
//! `Authorization: Bearer` does ([`bootstrap`]). Requests with neither are anonymous and may only
//! reach the health, version and `/cacerts` endpoints. [`authorize`] limits what bootstrap users
//! and nodes may do ([`node`]: upstream's Node authorizer and NodeRestriction); [`requester`]
//! records who asked for a certificate.

pub mod authorize;
pub mod bootstrap;
pub mod node;
pub mod pki;
pub mod requester;

use http::HeaderMap;
use ledge_api::ApiError;

use crate::state::ApiState;

use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name (certificate CN).
    pub name: String,
    /// Groups (certificate O entries).
    pub groups: Vec<String>,
}

/// The identity in a verified client certificate (DER).
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User { name, groups })
}

/// The bearer token of a request, if it sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who sent a request: the client certificate's user, else the bearer token's (upstream's union
/// authenticator tries x509 before tokens). A bearer token that does not authenticate is a 401,
/// never a silent fall back to anonymous.
pub async fn authenticate(
    state: &ApiState,
    cert_user: Option<User>,
    headers: &HeaderMap,
) -> Result<Option<User>, ApiError> {
    if cert_user.is_some() {
        return Ok(cert_user);
    }
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    match bootstrap::authenticate(state, token).await {
        Ok(user) => Ok(Some(user)),
        Err(why) => {
            tracing::debug!(reason = ?why, "bearer token refused");
            Err(ApiError::unauthorized())
        }
    }
}
