//! Authorization. Until RBAC lands, two kinds of users are restricted, and every other
//! authenticated user is an administrator:
//!
//! - users authenticated by a bootstrap token (group `system:bootstrappers`) get only what
//!   upstream's default roles give that group — `system:node-bootstrapper` (create/get/list/watch
//!   CertificateSigningRequests) and `system:discovery` (discovery, `/version`, `/openapi`);
//! - nodes (`system:node:<node>` in `system:nodes`) get discovery and what upstream's Node
//!   authorizer and NodeRestriction admission allow them ([`super::node`]). Their resource
//!   requests are decided by [`check_node`] once the request is routed and its body read, as
//!   some rules read the watch cache (is this pod bound to the node?) or the body (the name of a
//!   Node being created).
//!
//! Everything else is 403 with upstream's message (`secrets is forbidden: User
//! "system:bootstrap:abcdef" cannot list resource "secrets" in API group "" in the namespace
//! "default"`), followed by the Node authorizer's reason where it gives one.

use http::{HeaderMap, Method};
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use serde_json::Value;

use super::User;
use super::bootstrap::GROUP as BOOTSTRAPPERS;
use super::node::{self, Decision, NodeRequest};
use crate::http::body;
use crate::http::query::Query;
use crate::http::request::{RequestInfo, Route, Verb};
use crate::state::ApiState;

/// Whether a user authenticated with a bootstrap token.
pub fn is_bootstrapper(user: &User) -> bool {
    user.groups.iter().any(|g| g == BOOTSTRAPPERS)
}

/// Whether the node rules apply to a user (a bootstrapper stays a bootstrapper).
fn is_restricted_node(user: &User) -> bool {
    !is_bootstrapper(user) && node::is_node(user)
}

/// Decide whether `user` may make this request; `Err` is the 403 to send. A node's resource
/// requests pass here and are decided by [`check_node`].
pub fn check(user: &User, method: &Method, path: &str, route: &Route) -> Result<(), ApiError> {
    let node = is_restricted_node(user);
    if !is_bootstrapper(user) && !node {
        return Ok(());
    }
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::CoreVersions | Route::Groups | Route::Group(_) | Route::GroupVersion(..) if read => {
            Ok(())
        }
        Route::Other if read && is_discovery_path(path) => Ok(()),
        Route::Resource(_) if node => Ok(()),
        Route::Resource(info) if bootstrapper_may(info) => Ok(()),
        Route::Resource(info) => Err(resource_forbidden(user, info)),
        _ => Err(path_forbidden(user, method, path)),
    }
}

/// Decide a node's resource request (for anyone else: `Ok`); `Err` is the 403 to send. Reads
/// the watch cache after it has caught up with the store, so a pod bound a moment ago counts.
///
/// `headers` and `body` are the request's; only a create's body is read (its `metadata.name`).
pub async fn check_node(
    state: &ApiState,
    user: &User,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    if !is_restricted_node(user) {
        return Ok(());
    }
    let Some(name) = node::node_name(user) else {
        return Err(forbidden_because(user, info, "unknown node for user"));
    };
    let created = node::needs_body_name(info)
        .then(|| body::decode_object(&body::content_type(headers), body).ok())
        .flatten();
    let body_name = created
        .as_ref()
        .and_then(|o| o.at("/metadata/name"))
        .and_then(Value::as_str);
    if node::needs_graph(info) {
        state.cache.wait_for(state.store.current_revision()).await;
    }
    let request = NodeRequest {
        info,
        field_selector: query.get("fieldSelector"),
        body_name,
    };
    match node::decide(name, &request, &*state.cache) {
        Decision::Allow => Ok(()),
        Decision::Deny(None) => Err(resource_forbidden(user, info)),
        Decision::Deny(Some(reason)) => Err(forbidden_because(user, info, &reason)),
    }
}

/// `system:discovery`'s non-resource URLs.
fn is_discovery_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(
        path,
        "/version" | "/api" | "/apis" | "/openapi" | "/livez" | "/readyz" | "/healthz"
    ) || path.starts_with("/openapi/")
        || path == "/swagger-2.0.0.pb-v1"
}

/// `system:node-bootstrapper`: CSRs, and nothing else.
fn bootstrapper_may(info: &RequestInfo) -> bool {
    info.group == "certificates.k8s.io"
        && info.resource == "certificatesigningrequests"
        && info.subresource.is_none()
        && matches!(
            info.verb,
            Verb::Create | Verb::Get | Verb::List | Verb::Watch
        )
}

/// Upstream `forbiddenMessage` + `NewForbidden` for a resource request.
fn resource_forbidden(user: &User, info: &RequestInfo) -> ApiError {
    let mut resource = info.resource.clone();
    if let Some(sub) = &info.subresource {
        resource = format!("{resource}/{sub}");
    }
    let why = match &info.namespace {
        Some(ns) => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
            user.name,
            info.verb.as_str(),
            info.group
        ),
        None => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            user.name,
            info.verb.as_str(),
            info.group
        ),
    };
    let qualified = if info.group.is_empty() {
        info.resource.clone()
    } else {
        format!("{}.{}", info.resource, info.group)
    };
    let name = info.name.clone().unwrap_or_default();
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    let mut err = ApiError::forbidden(message);
    err.name = Some(name).filter(|n| !n.is_empty());
    err.group = Some(info.group.clone());
    err.kind = Some(info.resource.clone());
    err
}

/// [`resource_forbidden`] with the authorizer's reason appended, as upstream does.
fn forbidden_because(user: &User, info: &RequestInfo, reason: &str) -> ApiError {
    let mut err = resource_forbidden(user, info);
    err.message = format!("{}: {reason}", err.message);
    err
}

/// Upstream's message for a non-resource URL.
fn path_forbidden(user: &User, method: &Method, path: &str) -> ApiError {
    ApiError::forbidden(format!(
        "forbidden: User {:?} cannot {} path {path:?}",
        user.name,
        method.as_str().to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::route;

    fn bootstrapper() -> User {
        User {
            name: "system:bootstrap:abcdef".into(),
            groups: vec![BOOTSTRAPPERS.into()],
        }
    }

    fn decide(user: &User, method: Method, path: &str) -> Result<(), ApiError> {
        let r = route(&method, path, false);
        check(user, &method, path, &r)
    }

    #[test]
    fn bootstrappers_may_only_request_certificates_and_read_discovery() {
        let u = bootstrapper();
        let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
        assert!(decide(&u, Method::POST, csrs).is_ok());
        assert!(decide(&u, Method::GET, &format!("{csrs}/node-csr-x")).is_ok());
        assert!(decide(&u, Method::GET, "/apis").is_ok());
        assert!(decide(&u, Method::GET, "/version").is_ok());
        assert!(decide(&u, Method::PUT, &format!("{csrs}/node-csr-x/status")).is_err());
        assert!(decide(&u, Method::DELETE, &format!("{csrs}/node-csr-x")).is_err());
        assert!(decide(&u, Method::POST, "/api/v1/nodes").is_err());
    }

    #[test]
    fn forbidden_messages_read_like_upstream() {
        let u = bootstrapper();
        let err = decide(&u, Method::GET, "/api/v1/namespaces/default/secrets");
        let err = err.err().map(|e| (e.code, e.message));
        assert_eq!(
            err,
            Some((
                403,
                "secrets is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\"".to_string()
            ))
        );
        let err = decide(&u, Method::GET, "/api/v1/nodes/n1")
            .err()
            .map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some(
                "nodes \"n1\" is forbidden: User \"system:bootstrap:abcdef\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
            )
        );
        let err = decide(&u, Method::GET, "/metrics").err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("forbidden: User \"system:bootstrap:abcdef\" cannot get path \"/metrics\"")
        );
    }

    #[test]
    fn nodes_read_discovery_and_leave_resources_to_check_node() {
        let n = User {
            name: "system:node:a".into(),
            groups: vec![node::GROUP.into(), "system:authenticated".into()],
        };
        assert!(decide(&n, Method::GET, "/apis").is_ok());
        assert!(decide(&n, Method::GET, "/api/v1").is_ok());
        assert!(decide(&n, Method::GET, "/openapi/v3").is_ok());
        assert!(decide(&n, Method::GET, "/api/v1/namespaces/default/secrets").is_ok());
        let err = decide(&n, Method::GET, "/metrics").err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("forbidden: User \"system:node:a\" cannot get path \"/metrics\"")
        );
        let Route::Resource(info) = route(&Method::GET, "/api/v1/namespaces/default/pods/x", false)
        else {
            panic!("not a resource");
        };
        let err = forbidden_because(
            &n,
            &info,
            "no relationship found between node 'a' and this object",
        );
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                403,
                "pods \"x\" is forbidden: User \"system:node:a\" cannot get resource \"pods\" in API group \"\" in the namespace \"default\": no relationship found between node 'a' and this object"
            )
        );
    }

    #[test]
    fn other_users_are_not_restricted_here() {
        let admin = User {
            name: "ledge-admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(decide(&admin, Method::GET, "/api/v1/namespaces/default/secrets").is_ok());
    }
}
