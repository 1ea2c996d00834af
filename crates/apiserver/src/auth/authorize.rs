//! Authorization. Until RBAC lands, one rule is enforced: users authenticated by a bootstrap
//! token (group `system:bootstrappers`) get only what upstream's default roles give that group —
//! `system:node-bootstrapper` (create/get/list/watch CertificateSigningRequests) and
//! `system:discovery` (discovery, `/version`, `/openapi`). Everything else is 403 with upstream's
//! message (`secrets is forbidden: User "system:bootstrap:abcdef" cannot list resource "secrets"
//! in API group "" in the namespace "default"`). Other authenticated users are administrators.

use http::Method;
use ledge_api::ApiError;

use super::User;
use super::bootstrap::GROUP as BOOTSTRAPPERS;
use crate::http::request::{RequestInfo, Route, Verb};

/// Whether a user authenticated with a bootstrap token.
pub fn is_bootstrapper(user: &User) -> bool {
    user.groups.iter().any(|g| g == BOOTSTRAPPERS)
}

/// Decide whether `user` may make this request; `Err` is the 403 to send.
pub fn check(user: &User, method: &Method, path: &str, route: &Route) -> Result<(), ApiError> {
    if !is_bootstrapper(user) {
        return Ok(());
    }
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::CoreVersions | Route::Groups | Route::Group(_) | Route::GroupVersion(..) if read => {
            Ok(())
        }
        Route::Other if read && is_discovery_path(path) => Ok(()),
        Route::Resource(info) if bootstrapper_may(info) => Ok(()),
        Route::Resource(info) => Err(resource_forbidden(user, info)),
        _ => Err(path_forbidden(user, method, path)),
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
    fn other_users_are_not_restricted_here() {
        let admin = User {
            name: "ledge-admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(decide(&admin, Method::GET, "/api/v1/namespaces/default/secrets").is_ok());
    }
}
