//! The agent's errors: each one line a user can act on.

use std::path::PathBuf;

use ledge_api::ApiError;

use crate::client::ClientError;
use crate::files::FileError;
use crate::token::{CaMismatch, TokenError};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag has an unusable value.
    #[error("{0}")]
    Config(String),
    /// The join token cannot be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The server's CA is not the one the token pins.
    #[error(transparent)]
    CaMismatch(#[from] CaMismatch),
    /// No credentials and no token to get them with.
    #[error(
        "{} holds no node certificate: pass --token (from `ledge token create` on the server) to join",
        dir.display()
    )]
    NoToken {
        /// The data dir.
        dir: PathBuf,
    },
    /// The stored credentials belong to another node.
    #[error(
        "{} holds the certificate of {found:?}, not of node {wanted:?}: use --node-name {found_name} or another --data-dir",
        dir.display()
    )]
    OtherNode {
        /// The data dir.
        dir: PathBuf,
        /// The certificate's user.
        found: String,
        /// Its node name.
        found_name: String,
        /// The node name asked for.
        wanted: String,
    },
    /// The stored credentials belong to another cluster than the token's.
    #[error(
        "{} holds credentials for another cluster (CA sha256 {stored}), but the token pins {pinned}: use another --data-dir to join that cluster",
        dir.display()
    )]
    OtherCluster {
        /// The data dir.
        dir: PathBuf,
        /// Hash of the stored CA.
        stored: String,
        /// Hash in the token.
        pinned: String,
    },
    /// Reading or writing the data dir failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server refused the join token.
    #[error(
        "the server refused the join token: {} {}: {} (the token is wrong, expired or deleted; create one with `ledge token create`)",
        .0.code, .0.reason, .0.message
    )]
    TokenRefused(ApiError),
    /// An API call failed for good.
    #[error("{action}: {} {}: {}", source.code, source.reason, source.message)]
    Api {
        /// What was being done.
        action: String,
        /// The server's answer.
        #[source]
        source: ApiError,
    },
    /// A certificate could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The CSR was not signed in time.
    #[error(
        "certificate signing request {name} was not signed within {seconds}s (is it pending? see `kubectl get csr {name}`)"
    )]
    CsrTimeout {
        /// The CSR.
        name: String,
        /// How long the agent waited.
        seconds: u64,
    },
    /// The CSR was denied or failed.
    #[error("certificate signing request {name} was {how}: {message}")]
    CsrRejected {
        /// The CSR.
        name: String,
        /// `denied` or `failed`.
        how: &'static str,
        /// The condition's message.
        message: String,
    },
    /// Shutdown was asked for before the agent got going.
    #[error("cancelled")]
    Cancelled,
}

impl AgentError {
    /// An API failure while doing `action`.
    pub fn api(action: impl Into<String>, source: ApiError) -> Self {
        Self::Api {
            action: action.into(),
            source,
        }
    }
}
