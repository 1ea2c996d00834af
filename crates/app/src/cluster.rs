//! Cluster state several servers share through their datastore: today the cluster CA (its
//! certificate and key), which every server needs to issue serving, admin and node certificates
//! that all the others accept.
//!
//! As K3s does with its server token: the first server on a datastore seals the state under a
//! key derived from the cluster token (PBKDF2-HMAC-SHA256, then AES-256-GCM) and stores it at
//! [`STATE_KEY`]; a later server opens it with the same token, or is refused with a message
//! saying where the token is. Without the token the datastore's copy reveals nothing.
//!
//! The token is given with `--token` or, on the first server, generated and kept in
//! `<data dir>/token` (0600), which later starts of that server read.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Value, json};

use ledge_store::{Store, StoreError};

/// Where the sealed cluster state lives in the datastore (outside `/registry/`, so the API
/// never serves it).
pub const STATE_KEY: &str = "/ledge/bootstrap/cluster-state";

/// PBKDF2 rounds: a stolen datastore copy costs an attacker this much per guessed token.
const ROUNDS: u32 = 200_000;
const SALT_LEN: usize = 16;

/// The cluster token this server uses and whether it is new (to be shown to the user).
#[derive(Debug)]
pub(crate) struct Token {
    pub value: String,
    pub path: PathBuf,
    pub generated: bool,
}

/// Make this server's CA the cluster's, or take the cluster's: after this the files in
/// `<data dir>/tls` (`ca.crt`, `ca.key`) are the shared CA.
///
/// # Errors
/// A datastore holding a cluster this token does not open, a data dir holding another
/// cluster's CA, an unreachable datastore.
pub(crate) async fn share(
    store: &dyn Store,
    data_dir: &Path,
    given: Option<&str>,
) -> anyhow::Result<Token> {
    let pki_dir = data_dir.join("tls");
    std::fs::create_dir_all(&pki_dir)
        .with_context(|| format!("cannot create {}", pki_dir.display()))?;
    let token_path = data_dir.join("token");
    let stored_token = read_optional(&token_path)?.map(|t| t.trim().to_owned());
    if let Some(existing) = store.get(STATE_KEY).await.map_err(unavailable)? {
        let token = given.map(str::to_owned).or(stored_token).with_context(|| {
            "this datastore already holds a cluster: start this server with --token T, \
                 the token the first server printed (its <data dir>/token)"
                .to_owned()
        })?;
        let state = open(&existing.value, &token)?;
        adopt(&pki_dir, &state)?;
        write_token(&token_path, &token)?;
        return Ok(Token {
            value: token,
            path: token_path,
            generated: false,
        });
    }

    // The first server: its CA (made now if it has none) becomes the cluster's.
    let (token, generated) = match (given, stored_token) {
        (Some(t), _) => (t.to_owned(), false),
        (None, Some(t)) => (t, false),
        (None, None) => (generate_token()?, true),
    };
    ledge_apiserver::auth::pki::ClusterCa::load_or_create(&pki_dir)
        .context("cannot create the cluster CA")?;
    let state = json!({
        "caCert": std::fs::read_to_string(pki_dir.join("ca.crt"))?,
        "caKey": std::fs::read_to_string(pki_dir.join("ca.key"))?,
    });
    let sealed = seal(&state, &token)?;
    match store.create(STATE_KEY, Bytes::from(sealed)).await {
        Ok(_) => {}
        // Another server was first by a moment: take its state instead.
        Err(StoreError::AlreadyExists(_)) => {
            return Box::pin(share(store, data_dir, Some(&token))).await;
        }
        Err(e) => return Err(unavailable(e)),
    }
    write_token(&token_path, &token)?;
    Ok(Token {
        value: token,
        path: token_path,
        generated,
    })
}

fn unavailable(e: StoreError) -> anyhow::Error {
    anyhow::Error::new(e).context("cannot read or write the cluster state in the datastore")
}

/// Write the shared CA into `pki_dir`, refusing to replace a different one.
fn adopt(pki_dir: &Path, state: &Value) -> anyhow::Result<()> {
    let cert = state["caCert"].as_str().unwrap_or_default();
    let key = state["caKey"].as_str().unwrap_or_default();
    if cert.is_empty() || key.is_empty() {
        bail!("the cluster state in the datastore has no CA; it was written by another program");
    }
    let cert_path = pki_dir.join("ca.crt");
    if let Some(local) = read_optional(&cert_path)?
        && local != cert
    {
        bail!(
            "{} holds another cluster's CA than the datastore's: use a fresh --data-dir for a \
             server joining this cluster",
            cert_path.display()
        );
    }
    ledge_apiserver::auth::pki::write_private(&pki_dir.join("ca.key"), key)?;
    ledge_apiserver::auth::pki::write_private(&cert_path, cert)?;
    Ok(())
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    ledge_apiserver::auth::pki::write_private(path, &format!("{token}\n"))?;
    Ok(())
}

fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for a cluster token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn derive(token: &str, salt: &[u8]) -> anyhow::Result<LessSafeKey> {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(ROUNDS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        token.as_bytes(),
        &mut key,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &key)
        .map_err(|_| anyhow::anyhow!("cannot make a cluster state key"))?;
    Ok(LessSafeKey::new(unbound))
}

/// Seal `state` under `token`: `{"salt","nonce","sealed"}` in base64.
fn seal(state: &Value, token: &str) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| anyhow::anyhow!("no randomness to seal the cluster state"))?;
    let mut data = serde_json::to_vec(state)?;
    derive(token, &salt)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(STATE_KEY),
            &mut data,
        )
        .map_err(|_| anyhow::anyhow!("cannot seal the cluster state"))?;
    Ok(serde_json::to_vec(&json!({
        "version": 1,
        "salt": STANDARD.encode(salt),
        "nonce": STANDARD.encode(nonce),
        "sealed": STANDARD.encode(data),
    }))?)
}

/// Open what [`seal`] made; a wrong token is refused with what to do.
fn open(stored: &[u8], token: &str) -> anyhow::Result<Value> {
    let outer: Value = serde_json::from_slice(stored)
        .context("the cluster state in the datastore is not ledge's")?;
    let field = |name: &str| -> anyhow::Result<Vec<u8>> {
        STANDARD
            .decode(outer[name].as_str().unwrap_or_default())
            .with_context(|| format!("the cluster state's {name} is not base64"))
    };
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("sealed")?);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| anyhow::anyhow!("the cluster state's nonce has the wrong length"))?;
    let plain = derive(token, &salt)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(STATE_KEY),
            &mut data,
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "refused: the token does not open this datastore's cluster state; pass the \
                 token of the first server (its <data dir>/token) with --token"
            )
        })?;
    Ok(serde_json::from_slice(plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_opens_with_its_token_only() {
        let state = json!({"caCert": "C", "caKey": "K"});
        let sealed = seal(&state, "right").unwrap();
        assert_eq!(open(&sealed, "right").unwrap(), state);
        let err = open(&sealed, "wrong").unwrap_err().to_string();
        assert!(err.contains("--token"), "{err}");
        assert!(!String::from_utf8_lossy(&sealed).contains("caKey"));
    }

    #[tokio::test]
    async fn second_server_takes_the_first_servers_ca_and_a_wrong_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ledge_store::EmbeddedStore::open(
            &dir.path().join("db"),
            ledge_store::EmbeddedOptions::default(),
        )
        .unwrap();
        let first = dir.path().join("first");
        let token = share(&store, &first, None).await.unwrap();
        assert!(token.generated);
        let second = dir.path().join("second");
        let joined = share(&store, &second, Some(&token.value)).await.unwrap();
        assert!(!joined.generated);
        let ca = |d: &Path| std::fs::read_to_string(d.join("tls/ca.crt")).unwrap();
        assert_eq!(ca(&first), ca(&second));

        let third = dir.path().join("third");
        let err = share(&store, &third, Some("not-the-token"))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("refused"), "{err:#}");
        assert!(!third.join("tls/ca.crt").exists());
        let err = share(&store, &dir.path().join("fourth"), None)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("--token"), "{err:#}");
        store.shutdown().await.unwrap();
    }
}
