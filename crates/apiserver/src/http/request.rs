//! Turning a request path and method into what is being asked: the resource, namespace, name,
//! subresource and verb (upstream `RequestInfoFactory`, apiserver `pkg/endpoints/request`).

use http::Method;

/// A parsed resource request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// The Kubernetes verb.
    pub verb: Verb,
}

/// The Kubernetes verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// GET a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE one object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

impl Verb {
    /// The lower-case verb as RBAC and discovery name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A resource request.
    Resource(RequestInfo),
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// Anything else (health, version, openapi) — handled by path.
    Other,
}

/// Subresources of a namespace that keep `namespaces` as the resource.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parse a request path and method.
pub fn route(method: &Method, path: &str, watch_param: bool) -> Route {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group((*g).to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), (*v).to_string()),
        ["apis", g, v] => return Route::GroupVersion((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Other,
    };
    let mut rest: &[&str] = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    let (resource, name, subresource) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s] => (*r, Some(*n), Some(*s)),
        _ => return Route::Other,
    };
    // `/api/v1/namespaces/foo` names the namespace `foo`, not a namespace scope.
    if resource == "namespaces" {
        namespace = None;
    }
    let verb = match (method, name.is_some()) {
        (&Method::GET, true) | (&Method::HEAD, true) => Verb::Get,
        (&Method::GET, false) | (&Method::HEAD, false) if watch_param => Verb::Watch,
        (&Method::GET, false) | (&Method::HEAD, false) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Route::Other,
    };
    Route::Resource(RequestInfo {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: resource.to_string(),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
        verb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str) -> RequestInfo {
        match route(&method, path, false) {
            Route::Resource(i) => i,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let i = info(Method::GET, "/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (
                i.namespace.as_deref(),
                i.resource.as_str(),
                i.name.as_deref()
            ),
            (Some("default"), "configmaps", Some("x"))
        );
        assert_eq!(i.verb, Verb::Get);
        let i = info(Method::GET, "/api/v1/namespaces/foo");
        assert_eq!(
            (i.namespace, i.resource.as_str(), i.name.as_deref()),
            (None, "namespaces", Some("foo"))
        );
        let i = info(Method::PUT, "/api/v1/namespaces/foo/finalize");
        assert_eq!(
            (
                i.resource.as_str(),
                i.name.as_deref(),
                i.subresource.as_deref()
            ),
            ("namespaces", Some("foo"), Some("finalize"))
        );
        let i = info(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
        );
        assert_eq!(
            (i.group.as_str(), i.subresource.as_deref(), i.verb),
            ("apps", Some("scale"), Verb::Patch)
        );
        let i = info(Method::DELETE, "/api/v1/namespaces/d/pods");
        assert_eq!(i.verb, Verb::DeleteCollection);
        let i = info(Method::GET, "/api/v1/pods");
        assert_eq!((i.namespace, i.verb), (None, Verb::List));
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(route(&Method::GET, "/api", false), Route::CoreVersions);
        assert_eq!(
            route(&Method::GET, "/apis/apps/v1", false),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(route(&Method::GET, "/version", false), Route::Other);
    }
}
