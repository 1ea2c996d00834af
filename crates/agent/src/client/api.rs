//! `ledge_controller::Client` over REST: Kubernetes paths, JSON bodies, `Status` error bodies
//! turned back into [`ApiError`]s (code, reason, message, details), and watches read as one JSON
//! event per line.

use bytes::Bytes;
use futures_util::stream;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use ledge_api::Pointer as _;
use ledge_api::{ApiError, StatusCause};
use ledge_controller::{BoxFuture, BoxStream, Client, Kind, WatchEvent};
use serde_json::{Value, json};

use super::{ClientError, HttpClient, REQUEST_TIMEOUT};

/// The longest watch line (one event) accepted.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// Upstream `StatusReason`s, so a wire reason maps back to the `&'static str` [`ApiError`]
/// carries.
const REASONS: &[&str] = &[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Expired",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "TooManyRequests",
    "InternalError",
    "ServiceUnavailable",
    "Timeout",
    "ServerTimeout",
];

fn reason_for(reason: &str, code: u16) -> &'static str {
    if let Some(r) = REASONS.iter().find(|r| **r == reason) {
        return r;
    }
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Gone",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// The error a `Status` object describes (`code` when the object has none).
fn error_from_value(v: &Value, code: u16) -> ApiError {
    let code = v
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(code);
    let reason = reason_for(v.get("reason").and_then(Value::as_str).unwrap_or(""), code);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the server answered {code}"));
    let mut err = ApiError::new(code, reason, message);
    if let Some(d) = v.get("details") {
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        err.name = s("name");
        err.group = s("group");
        err.kind = s("kind");
        err.retry_after_seconds = d
            .get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        err.causes = d
            .get("causes")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| StatusCause {
                        reason: c.get("reason").and_then(Value::as_str).unwrap_or("").into(),
                        message: c
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                        field: c.get("field").and_then(Value::as_str).unwrap_or("").into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    err
}

/// The error an unsuccessful response describes: its `Status` body, else its text.
pub fn error_from_status(status: StatusCode, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("kind").and_then(Value::as_str) == Some("Status") => {
            error_from_value(&v, status.as_u16())
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let code = status.as_u16();
            let message = if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("unknown error")
                    .to_string()
            } else {
                text.chars().take(500).collect()
            };
            ApiError::new(code, reason_for("", code), message)
        }
    }
}

/// Whether a failure is worth retrying later: the server unreachable, overloaded or failing.
pub fn retryable(e: &ApiError) -> bool {
    matches!(e.code, 429 | 500 | 502 | 503 | 504)
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/api/v1[/namespaces/<ns>]/<plural>` or `/apis/<group>/<version>[...]`.
pub(crate) fn collection_path(kind: &Kind, namespace: Option<&str>) -> String {
    let base = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", kind.plural),
        None => format!("{base}/{}", kind.plural),
    }
}

fn object_path(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", collection_path(kind, namespace))
}

fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.at(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
}

/// Make sure a body names its kind, as the API requires.
fn typed(kind: &Kind, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(kind.api_version()));
        m.entry("kind").or_insert_with(|| json!(kind.kind));
    }
    obj
}

fn encode(v: &Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ApiError::bad_request(format!("cannot encode the request: {e}")))
}

impl HttpClient {
    /// Complete the deletion of an object of this `uid` at once (`gracePeriodSeconds: 0`), as
    /// kubelet does once a pod's containers have stopped.
    ///
    /// # Errors
    /// The API's answer (404 gone already, 409 another object of the same name).
    pub async fn delete_now(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ApiError> {
        let options = json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        });
        self.json(
            Method::DELETE,
            &object_path(kind, Some(namespace), name),
            Some(&options),
        )
        .await
        .map(|_| ())
    }

    /// One JSON request: 2xx → the decoded body (`null` when empty), else the server's error.
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let body = body.map(encode).transpose()?;
        let (status, bytes) = self.request(method, path, body).await?;
        if !status.is_success() {
            return Err(error_from_status(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::internal(format!("the server sent JSON that cannot be read: {e}"))
        })
    }

    async fn open_watch(&self, path: &str) -> Result<Incoming, ApiError> {
        let used = std::sync::atomic::AtomicU64::new(0);
        let sent = self.send_on(Method::GET, path, None, None, &used);
        let resp = match tokio::time::timeout(self.request_timeout, sent).await {
            Ok(sent) => sent?,
            Err(_) => {
                self.forget_connection(used.load(std::sync::atomic::Ordering::Relaxed))
                    .await;
                return Err(ApiError::from(ClientError::Unreachable {
                    server: self.url(),
                    reason: "the watch request timed out".into(),
                }));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(error_from_status(status, &body))
    }
}

/// One line of a watch stream; `None` for lines to skip.
fn parse_event(line: &[u8]) -> Option<Result<WatchEvent, ApiError>> {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(Err(ApiError::internal(format!(
                "the server sent a watch event that cannot be read: {e}"
            ))));
        }
    };
    let object = v.get("object").cloned().unwrap_or(Value::Null);
    let event = match v.get("type").and_then(Value::as_str)? {
        "ADDED" => WatchEvent::Added(object.into()),
        "MODIFIED" => WatchEvent::Modified(object.into()),
        "DELETED" => WatchEvent::Deleted(object.into()),
        "BOOKMARK" => WatchEvent::Bookmark(meta(&object, "resourceVersion")?.to_string()),
        "ERROR" => return Some(Err(error_from_value(&object, 500))),
        _ => return None,
    };
    Some(Ok(event))
}

struct WatchState {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

/// The events of a watch response body, ending after an error.
fn events(body: Incoming) -> BoxStream<Result<WatchEvent, ApiError>> {
    let state = WatchState {
        body,
        buf: Vec::new(),
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(pos) = st.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = st.buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match parse_event(line) {
                    Some(Ok(ev)) => return Some((Ok(ev), st)),
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => continue,
                }
            }
            match st.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        st.buf.extend_from_slice(&data);
                        if st.buf.len() > MAX_EVENT {
                            st.done = true;
                            return Some((
                                Err(ApiError::internal("a watch event is larger than 16 MiB")),
                                st,
                            ));
                        }
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err = ApiError::new(
                        503,
                        "ServiceUnavailable",
                        format!("the watch connection broke: {e}"),
                    );
                    return Some((Err(err), st));
                }
                None => {
                    // A last line without its newline still counts.
                    st.done = true;
                    let rest = std::mem::take(&mut st.buf);
                    let rest = rest.trim_ascii();
                    if rest.is_empty() {
                        return None;
                    }
                    return parse_event(rest).map(|ev| (ev, st));
                }
            }
        }
    }))
}

impl Client for HttpClient {
    fn get<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            match self
                .json(Method::GET, &object_path(kind, namespace, name), None)
                .await
            {
                Ok(v) => Ok(Some(v)),
                // A missing object names itself; a 404 without details is a missing resource.
                Err(e) if e.code == 404 && e.name.is_some() => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        labels: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<Value>, String), ApiError>> {
        Box::pin(async move {
            let mut query = Vec::new();
            if let Some(l) = labels.filter(|l| !l.is_empty()) {
                query.push(format!("labelSelector={}", encode_query(l)));
            }
            if let Some(f) = &self.field_selector {
                query.push(format!("fieldSelector={}", encode_query(f)));
            }
            let mut path = collection_path(kind, namespace);
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let list = self.json(Method::GET, &path, None).await?;
            let rv = meta(&list, "resourceVersion").unwrap_or("").to_string();
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|o| typed(kind, o))
                .collect();
            Ok((items, rv))
        })
    }

    fn create<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let ns = namespace.or(meta(&obj, "namespace"));
            let path = collection_path(kind, ns);
            self.json(Method::POST, &path, Some(&typed(kind, obj)))
                .await
        })
    }

    fn update<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let ns = namespace.or(meta(&obj, "namespace"));
            let path = object_path(kind, ns, meta(&obj, "name").unwrap_or(""));
            self.json(Method::PUT, &path, Some(&typed(kind, obj))).await
        })
    }

    fn update_status<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let ns = namespace.or(meta(&obj, "namespace"));
            let path = format!(
                "{}/status",
                object_path(kind, ns, meta(&obj, "name").unwrap_or(""))
            );
            self.json(Method::PUT, &path, Some(&typed(kind, obj))).await
        })
    }

    fn delete<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
        propagation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let options = json!({
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "propagationPolicy": propagation.unwrap_or("Background"),
            });
            self.json(
                Method::DELETE,
                &object_path(kind, namespace, name),
                Some(&options),
            )
            .await
            .map(|_| ())
        })
    }

    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/binding");
            self.json(Method::POST, &path, Some(&binding))
                .await
                .map(|_| ())
        })
    }

    fn watch<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<Result<WatchEvent, ApiError>>, ApiError>> {
        Box::pin(async move {
            let mut path = format!(
                "{}?watch=true&allowWatchBookmarks=true",
                collection_path(kind, namespace)
            );
            if let Some(f) = &self.field_selector {
                path.push_str(&format!("&fieldSelector={}", encode_query(f)));
            }
            if !resource_version.is_empty() {
                path.push_str(&format!(
                    "&resourceVersion={}",
                    encode_query(resource_version)
                ));
            }
            let body = self.open_watch(&path).await?;
            Ok(events(body))
        })
    }
}

#[cfg(test)]
mod tests {
    use ledge_controller::kinds;

    use super::*;

    #[test]
    fn paths_follow_the_kubernetes_layout() {
        assert_eq!(
            object_path(&kinds::NODE, Some("ignored"), "n1"),
            "/api/v1/nodes/n1"
        );
        assert_eq!(
            object_path(&kinds::LEASE, Some("kube-node-lease"), "n1"),
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
        );
        assert_eq!(collection_path(&kinds::POD, None), "/api/v1/pods");
        assert_eq!(encode_query("app in (a,b)"), "app%20in%20%28a%2Cb%29");
    }

    #[test]
    fn status_bodies_become_api_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"nodes"},"code":404}"#;
        let e = error_from_status(StatusCode::NOT_FOUND, body);
        assert_eq!((e.code, e.reason), (404, "NotFound"));
        assert_eq!(e.message, "nodes \"x\" not found");
        assert_eq!(e.name.as_deref(), Some("x"));
        let e = error_from_status(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (502, "", "upstream down")
        );
        let e = error_from_status(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(
            (e.reason, e.message.as_str()),
            ("Unauthorized", "Unauthorized")
        );
        assert!(retryable(&error_from_status(
            StatusCode::SERVICE_UNAVAILABLE,
            b""
        )));
        assert!(!retryable(&error_from_status(StatusCode::FORBIDDEN, b"")));
    }

    #[test]
    fn watch_lines_become_events() {
        let added = parse_event(br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#);
        assert!(matches!(added, Some(Ok(WatchEvent::Added(_)))));
        let bookmark = parse_event(
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"42"}}}"#,
        );
        assert_eq!(bookmark, Some(Ok(WatchEvent::Bookmark("42".into()))));
        let gone = parse_event(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}}"#,
        );
        assert!(matches!(gone, Some(Err(ref e)) if e.code == 410 && e.reason == "Expired"));
        assert_eq!(parse_event(br#"{"type":"SOMETHING"}"#), None);
        assert!(matches!(parse_event(b"{oops"), Some(Err(_))));
    }
}
