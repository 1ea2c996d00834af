//! Authentication: who is calling. Client certificates signed by the cluster CA identify users
//! (CN = user, O = groups), as in Kubernetes. Requests without one are anonymous and may only
//! reach the health and version endpoints.

pub mod pki;

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
