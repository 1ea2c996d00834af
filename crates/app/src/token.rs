//! `ledge token create|list|delete`: join tokens, stored the upstream way as Secrets
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`, written through
//! the API of the server running beside (its admin kubeconfig in the server's data dir) with the
//! agent's HTTPS client. The printed token is K3s-style: it pins the cluster CA's hash.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ledge_agent::client::{Credentials, HttpClient, Trust};
use ledge_agent::token::JoinToken;
use ledge_controller::{Client as _, Kind};
use serde_json::{Value, json};

/// The Secret type of bootstrap tokens.
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group agents joining with a `ledge token create` token are in.
const EXTRA_GROUP: &str = "system:bootstrappers:ledge:default-node-token";
const NAMESPACE: &str = "kube-system";
const SECRET: Kind = Kind::new("", "v1", "secrets", "Secret", true);

/// Options of `ledge token create`.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// The server's data dir (for its admin kubeconfig).
    pub data_dir: std::path::PathBuf,
    /// Lifetime; zero means the token never expires.
    pub ttl: Duration,
    /// A note shown by `ledge token list`.
    pub description: Option<String>,
}

/// Parse a Go-style duration: `24h`, `90m`, `1h30m`, `45s`, `2d`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("invalid duration {text:?}: use e.g. 24h, 90m, 1h30m, 10s, 500ms, 7d");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `1d2h`, `23h59m`, `5m`, `30s` — the largest two units.
fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// An API client with the admin credentials of a server's data dir, and the cluster CA PEM.
fn admin_client(data_dir: &Path) -> anyhow::Result<(HttpClient, String)> {
    let path = data_dir.join("admin.kubeconfig");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run this beside `ledge server --data-dir {}` (after it started)",
            path.display(),
            data_dir.display()
        )
    })?;
    let config: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let field = |pointer: &[&str]| -> anyhow::Result<String> {
        let mut v = &config;
        for p in pointer {
            v = match p.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(*p),
            }
            .ok_or_else(|| anyhow!("{} has no {}", path.display(), pointer.join(".")))?;
        }
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{} has no {}", path.display(), pointer.join(".")))
    };
    let decode = |pointer: &[&str]| -> anyhow::Result<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(field(pointer)?)
            .with_context(|| {
                format!("{} in {} is not base64", pointer.join("."), path.display())
            })?;
        String::from_utf8(raw).with_context(|| format!("{} is not PEM", pointer.join(".")))
    };
    let server = field(&["clusters", "0", "cluster", "server"])?;
    let ca_pem = decode(&["clusters", "0", "cluster", "certificate-authority-data"])?;
    let cert_pem = decode(&["users", "0", "user", "client-certificate-data"])?;
    let key_pem = decode(&["users", "0", "user", "client-key-data"])?;
    let client = HttpClient::new(
        &server,
        Trust::Roots(&ca_pem),
        Credentials::Certificate { cert_pem, key_pem },
    )?;
    Ok((client, ca_pem))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Create a token and return it (`K10<ca hash>::<id>.<secret>`).
pub async fn create_token(opts: &TokenOptions) -> anyhow::Result<String> {
    let (client, ca_pem) = admin_client(&opts.data_dir)?;
    for _ in 0..5 {
        let token = JoinToken::generate(ca_pem.as_bytes(), &mut rand::rng());
        let mut data = json!({
            "token-id": b64(&token.id),
            "token-secret": b64(&token.secret),
            "usage-bootstrap-authentication": b64("true"),
            "usage-bootstrap-signing": b64("true"),
            "auth-extra-groups": b64(EXTRA_GROUP),
        });
        if !opts.ttl.is_zero() {
            let ttl =
                chrono::Duration::from_std(opts.ttl).map_err(|_| anyhow!("--ttl is too long"))?;
            let expires = Utc::now() + ttl;
            data["expiration"] = json!(b64(
                &expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if let Some(d) = &opts.description {
            data["description"] = json!(b64(d));
        }
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{}", token.id), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "data": data,
        });
        match client.create(&SECRET, Some(NAMESPACE), secret).await {
            Ok(_) => return Ok(token.to_string()),
            // The id is taken (1 in 2 billion): draw another.
            Err(e) if e.code == 409 => continue,
            Err(e) => bail!("cannot store the token: {e}"),
        }
    }
    bail!("cannot store the token: every id drawn was taken")
}

fn secret_data(secret: &Value, key: &str) -> Option<String> {
    let raw = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

/// One line of `ledge token list`.
fn describe(secret: &Value, now: DateTime<Utc>) -> Option<[String; 4]> {
    let id = secret_data(secret, "token-id")?;
    let (ttl, expires) = match secret_data(secret, "expiration") {
        None => ("<forever>".to_string(), "<never>".to_string()),
        Some(exp) => match DateTime::parse_from_rfc3339(&exp) {
            Ok(t) if t > now => (human(t.with_timezone(&Utc) - now), exp),
            Ok(_) => ("<expired>".to_string(), exp),
            Err(_) => ("<invalid>".to_string(), exp),
        },
    };
    let description = secret_data(secret, "description").unwrap_or_else(|| "<none>".into());
    Some([id, ttl, expires, description])
}

/// Print the tokens: id, time left, expiry, description (never the secrets).
pub async fn list_tokens(data_dir: &Path) -> anyhow::Result<()> {
    let (client, _) = admin_client(data_dir)?;
    let (items, _) = client
        .list(&SECRET, Some(NAMESPACE), None)
        .await
        .map_err(|e| anyhow!("cannot list tokens: {e}"))?;
    let now = Utc::now();
    let mut rows = vec![[
        "ID".to_string(),
        "TTL".to_string(),
        "EXPIRES".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    rows.extend(
        items
            .iter()
            .filter(|s| s.get("type").and_then(Value::as_str) == Some(SECRET_TYPE))
            .filter_map(|s| describe(s, now)),
    );
    let widths: Vec<usize> = (0..3)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        println!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

/// Delete a token by id (or whole token), so agents can no longer join with it.
pub async fn delete_token(data_dir: &Path, id_or_token: &str) -> anyhow::Result<()> {
    let id = match JoinToken::parse(id_or_token) {
        Ok(t) => t.id,
        Err(_) => id_or_token
            .split('.')
            .next()
            .unwrap_or(id_or_token)
            .to_string(),
    };
    let (client, _) = admin_client(data_dir)?;
    client
        .delete(
            &SECRET,
            Some(NAMESPACE),
            &format!("bootstrap-token-{id}"),
            None,
        )
        .await
        .map_err(|e| anyhow!("cannot delete token {id}: {e}"))?;
    println!("token {id} deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "10", "10x", "1.5h", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listed_tokens_show_time_left_and_never_the_secret() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let secret = json!({"type": SECRET_TYPE, "data": {
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "expiration": b64("2025-01-01T23:59:00Z"),
            "description": b64("for the lab"),
        }});
        let row = describe(&secret, now);
        assert_eq!(
            row,
            Some([
                "abcdef".to_string(),
                "23h59m".to_string(),
                "2025-01-01T23:59:00Z".to_string(),
                "for the lab".to_string()
            ])
        );
        let forever = json!({"data": {"token-id": b64("abcdef")}});
        assert_eq!(
            describe(&forever, now).map(|r| r[1].clone()),
            Some("<forever>".to_string())
        );
        assert_eq!(human(chrono::Duration::seconds(90_000)), "1d1h");
    }
}
