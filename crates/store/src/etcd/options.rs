//! How to reach an etcd cluster: endpoints from a `--datastore-endpoint` URL, optional TLS, and
//! the timeouts that decide how fast a lost quorum or a dead member is noticed.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::{Result, StoreError};

/// TLS material for etcd's client port (K3s' `--datastore-cafile/-certfile/-keyfile`).
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificates; `None` trusts none (TLS off).
    pub ca_file: Option<PathBuf>,
    /// The client certificate, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    fn enabled(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some()
    }
}

/// Where etcd is and how to talk to it.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Client TLS; plaintext when empty.
    pub tls: EtcdTls,
    /// How long one request may take before it fails with `Unavailable`.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Options for `endpoints` with no TLS and the default timeout.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            tls: EtcdTls::default(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// A client for these options. Connections are made lazily, so this succeeds while every
    /// member is down; requests then fail with `Unavailable`.
    pub(super) async fn client(&self) -> Result<Client> {
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        let urls: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if self.tls.enabled() {
            options = options.with_tls(self.tls_config()?);
        }
        Client::connect(urls, Some(options))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }

    fn tls_config(&self) -> Result<TlsOptions> {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.tls.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend(
                    "an etcd client certificate needs both a certificate and a key file".into(),
                ));
            }
        }
        Ok(tls)
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| StoreError::Backend(format!("cannot read {}: {e}", path.display()).into()))
}

/// Parse `etcd://host:port[,host:port...]` (or `http(s)://` per member, as K3s accepts) into
/// member addresses.
///
/// # Errors
/// A one-line message naming what is wrong, for the command line.
pub fn parse_endpoints(url: &str) -> std::result::Result<Vec<String>, String> {
    let rest = url
        .strip_prefix("etcd://")
        .or_else(|| url.strip_prefix("etcds://"))
        .or_else(|| url.strip_prefix("http://"))
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("unsupported datastore endpoint {url:?}: use etcd://host:port[,host:port...]")
        })?;
    let mut endpoints = Vec::new();
    for member in rest.split(',') {
        let member = member
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        let Some((host, port)) = member.rsplit_once(':') else {
            return Err(format!(
                "etcd member {member:?} has no port: use host:port, e.g. 127.0.0.1:2379"
            ));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!(
                "etcd member {member:?} is not host:port, e.g. 127.0.0.1:2379"
            ));
        }
        endpoints.push(member.to_owned());
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::parse_endpoints;

    #[test]
    fn endpoints_parse_from_the_flag_forms() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379,127.0.0.1:2381").unwrap(),
            vec!["127.0.0.1:2379", "127.0.0.1:2381"]
        );
        assert_eq!(
            parse_endpoints("https://e1:2379,https://e2:2379").unwrap(),
            vec!["e1:2379", "e2:2379"]
        );
        assert!(
            parse_endpoints("mysql://x")
                .unwrap_err()
                .contains("etcd://")
        );
        assert!(
            parse_endpoints("etcd://host")
                .unwrap_err()
                .contains("no port")
        );
        assert!(parse_endpoints("etcd://:99999").is_err());
    }
}
