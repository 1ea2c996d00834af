//! Bootstrap token authentication, as upstream's `plugin/pkg/auth/authenticator/token/bootstrap`:
//! `Authorization: Bearer <id>.<secret>` is checked against the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` and, when it matches,
//! names the user `system:bootstrap:<id>` in `system:bootstrappers` plus the Secret's
//! `auth-extra-groups`. What such a user may do is decided in [`super::authorize`].
//!
//! Every failure is the same bare 401, as upstream: a caller learns nothing about which tokens
//! exist. The server log says why (at debug level).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ledge_api::Pointer as _;
use serde_json::Value;

use super::User;
use crate::state::ApiState;

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group every bootstrap token user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The prefix of bootstrap token user names (`system:bootstrap:<id>`).
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The prefix of bootstrap token Secret names (`bootstrap-token-<id>`).
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// Where bootstrap token Secrets live.
pub const NAMESPACE: &str = "kube-system";

/// Split `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`), upstream's `BootstrapTokenRegexp`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Compare two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One `data` entry of a Secret, decoded.
fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether an extra group is one a bootstrap token may grant (upstream
/// `^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`).
fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why a token was refused (logged, never sent).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not of the `<id>.<secret>` form.
    Malformed,
    /// No Secret for the id, or one of the wrong type or being deleted.
    Unknown,
    /// The secret half does not match.
    WrongSecret,
    /// The token is past its `expiration`.
    Expired,
    /// `usage-bootstrap-authentication` is not `"true"`.
    NotForAuthentication,
    /// `auth-extra-groups` names a group outside `system:bootstrappers:*`.
    BadExtraGroups,
}

/// Check a token against its Secret as of `now`.
pub fn check(secret: Option<&Value>, token: &str, now: DateTime<Utc>) -> Result<User, Refused> {
    let (id, given) = parse_token(token).ok_or(Refused::Malformed)?;
    let secret = secret.ok_or(Refused::Unknown)?;
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || secret.at("/metadata/deletionTimestamp").is_some()
    {
        return Err(Refused::Unknown);
    }
    if data(secret, "token-id").as_deref() != Some(id) {
        return Err(Refused::Unknown);
    }
    let stored = data(secret, "token-secret").unwrap_or_default();
    if !constant_time_eq(stored.as_bytes(), given.as_bytes()) {
        return Err(Refused::WrongSecret);
    }
    if let Some(exp) = data(secret, "expiration") {
        // An unparseable expiration counts as expired, as upstream does.
        let expired = DateTime::parse_from_rfc3339(&exp).map_or(true, |t| t <= now);
        if expired {
            return Err(Refused::Expired);
        }
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(Refused::NotForAuthentication);
    }
    let mut groups = vec![GROUP.to_string()];
    if let Some(extra) = data(secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_extra_group(g) {
                return Err(Refused::BadExtraGroups);
            }
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Ok(User {
        name: format!("{USER_PREFIX}{id}"),
        groups,
    })
}

/// Authenticate a bearer token against the bootstrap token Secrets in the cache.
pub async fn authenticate(state: &ApiState, token: &str) -> Result<User, Refused> {
    let (id, _) = parse_token(token).ok_or(Refused::Malformed)?;
    state.cache.wait_for(state.store.current_revision()).await;
    let secret = state.cache.get(&format!(
        "/registry/core/secrets/{NAMESPACE}/{SECRET_PREFIX}{id}"
    ));
    check(secret.as_deref(), token, Utc::now())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
            "usage-bootstrap-signing": b64("true"),
            "auth-extra-groups": b64(extra),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn token_shape_is_checked() {
        assert_eq!(
            parse_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef",
            "abcde.0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef.x",
            "abc_ef.0123456789abcdef",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_matching_token_names_a_bootstrap_user() {
        let s = secret(
            Some("2025-06-02T00:00:00Z"),
            "system:bootstrappers:ledge:default-node-token",
        );
        let user = check(Some(&s), "abcdef.0123456789abcdef", now());
        assert_eq!(
            user,
            Ok(User {
                name: "system:bootstrap:abcdef".into(),
                groups: vec![
                    "system:bootstrappers".into(),
                    "system:bootstrappers:ledge:default-node-token".into()
                ],
            })
        );
    }

    #[test]
    fn wrong_expired_unknown_and_unusable_tokens_are_refused() {
        let s = secret(Some("2025-06-02T00:00:00Z"), "");
        assert_eq!(
            check(Some(&s), "abcdef.0123456789abcdee", now()),
            Err(Refused::WrongSecret)
        );
        assert_eq!(
            check(None, "abcdef.0123456789abcdef", now()),
            Err(Refused::Unknown)
        );
        let old = secret(Some("2025-05-31T23:59:59Z"), "");
        assert_eq!(
            check(Some(&old), "abcdef.0123456789abcdef", now()),
            Err(Refused::Expired)
        );
        let garbled = secret(Some("tomorrow"), "");
        assert_eq!(
            check(Some(&garbled), "abcdef.0123456789abcdef", now()),
            Err(Refused::Expired)
        );
        let mut no_auth = secret(None, "");
        no_auth["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert_eq!(
            check(Some(&no_auth), "abcdef.0123456789abcdef", now()),
            Err(Refused::NotForAuthentication)
        );
        let escalating = secret(None, "system:masters");
        assert_eq!(
            check(Some(&escalating), "abcdef.0123456789abcdef", now()),
            Err(Refused::BadExtraGroups)
        );
        let mut opaque = secret(None, "");
        opaque["type"] = json!("Opaque");
        assert_eq!(
            check(Some(&opaque), "abcdef.0123456789abcdef", now()),
            Err(Refused::Unknown)
        );
    }

    #[test]
    fn no_expiration_means_no_expiry() {
        let s = secret(None, "");
        assert!(check(Some(&s), "abcdef.0123456789abcdef", now()).is_ok());
    }
}
