//! The servers a client may talk to, in the order it tries them, and which one it talks to now.
//! Several `ledge server`s on one datastore all answer the API; an agent knows them from
//! `--server` (configured) and from the `default/kubernetes` Endpoints (learned, see
//! [`crate::discovery`]), and fails over between them as K3s agents do: a dial starts at the
//! current server and moves on to the next one that answers, once round the set at most.
//!
//! What lives here is the bookkeeping only (pure, tested below); dialling is in the parent
//! module, the tunnels that follow the set in [`crate::tunnel`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::Uri;
use rustls::pki_types::ServerName;

use super::ClientError;

/// One server: where to connect and which name its certificate must carry.
#[derive(Debug)]
pub struct Server {
    /// `https://host:port`, normalised (IPv6 in brackets, the port always spelled out).
    url: String,
    /// `host:port` (`[v6]:port`), for the `Host`/`:authority` header.
    pub(crate) authority: String,
    /// The host without brackets, to connect to.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) server_name: ServerName<'static>,
}

impl Server {
    /// Parse `https://host[:port]` (443 by default).
    ///
    /// # Errors
    /// Not an `https` URL, a path, or a host that cannot be a TLS server name.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let (host, port) = parse_url(url)?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| ClientError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            url: format!("https://{authority}"),
            authority,
            host,
            port,
            server_name,
        })
    }

    /// The server's URL, `https://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The socket address, when the host is an IP address (learned servers always are).
    fn addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

/// Split `https://host:port` into host and port (443 by default).
pub(crate) fn parse_url(url: &str) -> Result<(String, u16), ClientError> {
    let bad = |reason: &str| ClientError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the scheme must be https"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(uri.path(), "" | "/") {
        return Err(bad("a path is not supported"));
    }
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// The URLs of a `--server` value: comma-separated, blanks ignored.
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A tunnel the agent should keep open, and whether it asks the server to renew the node's
/// Lease (only the one to the current server does).
#[derive(Clone, Debug)]
pub struct TunnelTarget {
    /// The server.
    pub server: Arc<Server>,
    /// Whether it offers the lease renewal.
    pub renews: bool,
    /// For the renewing tunnel: whether there is another server to fail over to, so its death
    /// must be noticed soon (the tunnel pings more often).
    pub failover: bool,
}

/// The configured and learned servers, and the current one.
#[derive(Debug)]
pub struct ServerSet {
    /// From `--server`, in the order given; always kept, as a fallback.
    configured: Vec<Arc<Server>>,
    /// From the cluster (the `kubernetes` Endpoints), sorted.
    learned: Vec<Arc<Server>>,
    /// The dial order: learned, then the configured ones not learned.
    order: Vec<Arc<Server>>,
    /// The server the connection goes (or last went) to; the first configured one at start.
    current: Arc<Server>,
    /// The address the current connection reached (a configured host name resolved), to tell
    /// which learned server it is.
    peer: Option<SocketAddr>,
    /// A server presumed dead (its tunnel stopped answering): the next dial tries it last.
    suspect: Option<String>,
}

impl ServerSet {
    /// A set of the configured servers; the first is current.
    ///
    /// # Errors
    /// No URL, or one that [`Server::parse`] refuses.
    pub fn new(urls: &[impl AsRef<str>]) -> Result<Self, ClientError> {
        let mut configured: Vec<Arc<Server>> = Vec::new();
        for url in urls {
            let server = Server::parse(url.as_ref())?;
            if !configured.iter().any(|s| s.url == server.url) {
                configured.push(Arc::new(server));
            }
        }
        let Some(current) = configured.first().cloned() else {
            return Err(ClientError::Url {
                url: String::new(),
                reason: "no server given".into(),
            });
        };
        Ok(Self {
            order: configured.clone(),
            configured,
            learned: Vec::new(),
            current,
            peer: None,
            suspect: None,
        })
    }

    /// The current server.
    pub fn current(&self) -> &Arc<Server> {
        &self.current
    }

    /// The address the current connection reached, once it did.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Every server, in dial order.
    pub fn servers(&self) -> &[Arc<Server>] {
        &self.order
    }

    /// The learned servers' URLs.
    pub fn learned(&self) -> Vec<String> {
        self.learned.iter().map(|s| s.url.clone()).collect()
    }

    /// The order one dial tries the servers in: the current one, then the others from the one
    /// after it, wrapping round — each once; a [suspect](Self::suspect) one last.
    pub fn dial_order(&self) -> Vec<Arc<Server>> {
        let at = self.order.iter().position(|s| s.url == self.current.url);
        let mut out = vec![self.current.clone()];
        let n = self.order.len();
        let start = at.map_or(0, |i| i + 1);
        out.extend(
            (0..n)
                .map(|k| &self.order[(start + k) % n])
                .filter(|s| s.url != self.current.url)
                .cloned(),
        );
        if let Some(i) = out
            .iter()
            .position(|s| Some(&s.url) == self.suspect.as_ref())
        {
            let s = out.remove(i);
            out.push(s);
        }
        out
    }

    /// Before the first connection: start at the server `key` (the node name) hashes to among
    /// all known ones, so a fleet's agents spread evenly over the servers, and one agent goes
    /// back to the same server after a restart. Fail-over then proceeds from there.
    pub fn spread(&mut self, key: &str) {
        if self.peer.is_some() || self.order.len() < 2 {
            return;
        }
        // FNV-1a: stable across releases and platforms, unlike std's hasher.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let len = u64::try_from(self.order.len()).unwrap_or(1);
        let at = usize::try_from(hash % len).unwrap_or(0);
        self.current = self.order[at].clone();
    }

    /// Take `url` for dead until a connection to any server succeeds: a server that dies
    /// silently would cost a full TCP connect timeout at the head of every dial.
    pub fn suspect(&mut self, url: &str) {
        self.suspect = Some(url.to_string());
    }

    /// Record a connection to `server` that reached `peer`; the previous current server's URL
    /// when this is a switch.
    pub fn connected(&mut self, server: &Arc<Server>, peer: Option<SocketAddr>) -> Option<String> {
        self.peer = peer;
        self.suspect = None;
        if server.url == self.current.url {
            return None;
        }
        let from = std::mem::replace(&mut self.current, server.clone());
        Some(from.url.clone())
    }

    /// Replace the learned servers (unparseable URLs are skipped); whether anything changed.
    /// The current server stays current even when it is no longer listed: its connection is
    /// not dropped for that.
    pub fn set_learned(&mut self, urls: &[impl AsRef<str>]) -> bool {
        let mut learned: Vec<Arc<Server>> = Vec::new();
        for url in urls {
            match Server::parse(url.as_ref()) {
                Ok(s) if !learned.iter().any(|l| l.url == s.url) => {
                    // Keep the same `Arc` for a known server, so tunnels to it are not touched.
                    let known = self.order.iter().find(|o| o.url == s.url).cloned();
                    learned.push(known.unwrap_or_else(|| Arc::new(s)));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "ignoring a learned server"),
            }
        }
        learned.sort_by(|a, b| a.url.cmp(&b.url));
        if learned
            .iter()
            .map(|s| &s.url)
            .eq(self.learned.iter().map(|s| &s.url))
        {
            return false;
        }
        self.learned = learned;
        self.order = self.learned.clone();
        for c in &self.configured {
            if !self.order.iter().any(|o| o.url == c.url) {
                self.order.push(c.clone());
            }
        }
        true
    }

    /// Whether `server` is the current one under another name: the same URL, or the address
    /// the current connection reached.
    fn is_current(&self, server: &Server) -> bool {
        server.url == self.current.url || (server.addr().is_some() && server.addr() == self.peer)
    }

    /// The tunnels to keep: one to every server, the current one renewing the Lease.
    ///
    /// A configured URL may name a learned server by another name (a DNS name, a NAT
    /// address): the current server's tunnel goes to the URL its connection uses, and a
    /// learned server is taken for the current one when the connection reached its address —
    /// or when it is the only server learned and not one of the configured URLs (one server,
    /// reached through an address it does not advertise: no second tunnel to it, which could
    /// not be reached anyway). Until servers are learned, every configured server gets one;
    /// afterwards the configured ones not learned are only a fallback for dialling.
    pub fn tunnel_targets(&self) -> Vec<TunnelTarget> {
        let mut out = vec![TunnelTarget {
            server: self.current.clone(),
            renews: true,
            failover: false,
        }];
        let configured = |s: &Arc<Server>| self.configured.iter().any(|c| c.url == s.url);
        let others: Vec<&Arc<Server>> = match self.learned.as_slice() {
            [] => self.configured.iter().collect(),
            [only] if !configured(only) => Vec::new(),
            learned => learned.iter().collect(),
        };
        out.extend(
            others
                .into_iter()
                .filter(|s| !self.is_current(s))
                .map(|s| TunnelTarget {
                    server: s.clone(),
                    renews: false,
                    failover: false,
                }),
        );
        out[0].failover = out.len() > 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(servers: &[Arc<Server>]) -> Vec<&str> {
        servers.iter().map(|s| s.url()).collect()
    }

    fn targets(set: &ServerSet) -> Vec<(String, bool)> {
        let targets = set.tunnel_targets();
        assert_eq!(
            targets[0].failover,
            targets.len() > 1,
            "the renewing tunnel watches closely when there is somewhere to fail over to"
        );
        assert!(targets[1..].iter().all(|t| !t.failover && !t.renews));
        targets
            .iter()
            .map(|t| (t.server.url().to_string(), t.renews))
            .collect()
    }

    fn t(url: &str, renews: bool) -> (String, bool) {
        (url.to_string(), renews)
    }

    #[test]
    fn server_urls_are_https_host_and_port() {
        assert_eq!(
            parse_url("https://127.0.0.1:6443").ok(),
            Some(("127.0.0.1".to_string(), 6443))
        );
        assert_eq!(
            parse_url("https://edge.example").ok(),
            Some(("edge.example".to_string(), 443))
        );
        assert_eq!(
            parse_url("https://[::1]:6443/").ok(),
            Some(("::1".to_string(), 6443))
        );
        assert!(parse_url("http://127.0.0.1:6443").is_err());
        assert!(parse_url("https://127.0.0.1:6443/api").is_err());
        assert!(parse_url("127.0.0.1:6443").is_err());
        let v6 = Server::parse("https://[fd00::1]:6443").ok();
        assert_eq!(v6.as_ref().map(Server::url), Some("https://[fd00::1]:6443"));
        assert_eq!(
            Server::parse("https://edge.example/").ok().map(|s| s.url),
            Some("https://edge.example:443".to_string())
        );
    }

    #[test]
    fn server_lists_split_on_commas() {
        assert_eq!(
            split_list("https://a:1, https://b:2,,https://c:3 "),
            ["https://a:1", "https://b:2", "https://c:3"]
        );
        assert!(split_list(" ").is_empty());
        assert!(ServerSet::new(&split_list("")).is_err());
        assert!(ServerSet::new(&["https://a:1", "http://b:2"]).is_err());
    }

    #[test]
    fn a_dial_starts_at_the_current_server_and_goes_round_once() -> Result<(), ClientError> {
        let mut set =
            ServerSet::new(&["https://a:1", "https://b:2", "https://c:3", "https://a:1"])?;
        assert_eq!(
            urls(&set.dial_order()),
            ["https://a:1", "https://b:2", "https://c:3"]
        );
        let b = set.dial_order()[1].clone();
        assert_eq!(set.connected(&b, None).as_deref(), Some("https://a:1"));
        assert_eq!(set.current().url(), "https://b:2");
        assert_eq!(
            urls(&set.dial_order()),
            ["https://b:2", "https://c:3", "https://a:1"]
        );
        assert_eq!(set.connected(&b, None), None, "no switch, nothing to log");
        // A server whose tunnel died is tried last, until a dial succeeds.
        set.suspect("https://b:2");
        assert_eq!(
            urls(&set.dial_order()),
            ["https://c:3", "https://a:1", "https://b:2"]
        );
        let c = set.dial_order()[0].clone();
        assert_eq!(set.connected(&c, None).as_deref(), Some("https://b:2"));
        assert_eq!(
            urls(&set.dial_order()),
            ["https://c:3", "https://a:1", "https://b:2"]
        );
        set.connected(&b, None);
        let single = ServerSet::new(&["https://a:1"])?;
        assert_eq!(urls(&single.dial_order()), ["https://a:1"]);
        Ok(())
    }

    #[test]
    fn learned_servers_come_first_and_configured_ones_stay_as_fallback() -> Result<(), ClientError>
    {
        let mut set = ServerSet::new(&["https://edge.example:6443"])?;
        assert!(set.set_learned(&["https://10.0.0.2:6443", "https://10.0.0.1:6443"]));
        assert!(
            !set.set_learned(&["https://10.0.0.1:6443", "https://10.0.0.2:6443"]),
            "the same servers in another order change nothing"
        );
        assert_eq!(
            urls(set.servers()),
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://edge.example:6443"
            ]
        );
        // The configured server stays current (and first to try) until a dial fails.
        assert_eq!(
            urls(&set.dial_order()),
            [
                "https://edge.example:6443",
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443"
            ]
        );
        let first = set.servers()[0].clone();
        set.connected(&first, None);
        assert_eq!(
            urls(&set.dial_order()),
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://edge.example:6443"
            ]
        );
        // A current server that is no longer listed is still tried first.
        assert!(set.set_learned(&["https://10.0.0.2:6443", "not a url"]));
        assert_eq!(
            urls(&set.dial_order()),
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://edge.example:6443"
            ]
        );
        Ok(())
    }

    #[test]
    fn every_server_gets_one_tunnel_and_only_the_current_one_renews()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut set = ServerSet::new(&["https://edge.example:6443", "https://10.0.0.9:6443"])?;
        // Nothing learned: the configured servers.
        assert_eq!(
            targets(&set),
            [
                t("https://edge.example:6443", true),
                t("https://10.0.0.9:6443", false)
            ]
        );
        // One server learned: it is the one the agent talks to, whatever its name...
        set.set_learned(&["https://10.0.0.1:6443"]);
        assert_eq!(targets(&set), [t("https://edge.example:6443", true)]);
        // ... unless it is another configured server.
        set.set_learned(&["https://10.0.0.9:6443"]);
        assert_eq!(
            targets(&set),
            [
                t("https://edge.example:6443", true),
                t("https://10.0.0.9:6443", false)
            ]
        );
        // Two: the connection reached 10.0.0.1, so only 10.0.0.2 gets a second tunnel.
        set.set_learned(&["https://10.0.0.1:6443", "https://10.0.0.2:6443"]);
        let current = set.current().clone();
        set.connected(&current, Some("10.0.0.1:6443".parse()?));
        assert_eq!(
            targets(&set),
            [
                t("https://edge.example:6443", true),
                t("https://10.0.0.2:6443", false)
            ]
        );
        // Failing over to 10.0.0.2 moves the renewal there.
        let b = set.servers()[1].clone();
        set.connected(&b, Some("10.0.0.2:6443".parse()?));
        assert_eq!(
            targets(&set),
            [
                t("https://10.0.0.2:6443", true),
                t("https://10.0.0.1:6443", false)
            ]
        );
        Ok(())
    }

    #[test]
    fn agents_spread_over_the_known_servers_by_name() {
        let urls = [
            "https://10.0.0.1:6443",
            "https://10.0.0.2:6443",
            "https://10.0.0.3:6443",
        ];
        let start = |node: &str| {
            let mut set = ServerSet::new(&urls[..1]).unwrap();
            set.set_learned(&urls);
            set.spread(node);
            set.current().url().to_string()
        };
        let mut counts = std::collections::HashMap::new();
        for i in 0..300 {
            *counts.entry(start(&format!("edge-{i}"))).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&n| n > 60), "uneven: {counts:?}");
        assert_eq!(start("edge-7"), start("edge-7"), "stable per node");
        // A single server, or a connection already made, is left alone.
        let mut one = ServerSet::new(&urls[..1]).unwrap();
        one.spread("edge-1");
        assert_eq!(one.current().url(), urls[0]);
    }
}
