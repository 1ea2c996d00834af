//! The one request pipeline every resource goes through: decode → admission checks → strategy
//! → store → encode. Kinds differ only in their [`Strategy`](crate::registry::Strategy).

mod admit;
pub mod delete;
pub mod exec;
mod read;
mod subresource;
mod watch;
pub mod write;

use std::sync::Arc;

use http::{HeaderMap, Response};
use ledge_api::selector::{FieldSelector, LabelSelector};
use ledge_api::{ApiError, GroupResource};
use serde_json::Value;

use crate::http::body::{Body, Encoding};
use crate::http::query::Query;
use crate::http::request::{RequestInfo, Verb};
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

pub use subresource::bind_pod;
pub use write::{create_object, system_update};

/// Everything one resource request needs.
pub struct Ctx {
    /// Shared server state.
    pub state: Arc<ApiState>,
    /// The resource addressed.
    pub res: Arc<Resource>,
    /// The parsed path.
    pub info: RequestInfo,
    /// Query parameters.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// Negotiated response encoding.
    pub encoding: Encoding,
}

impl Ctx {
    /// The group/resource errors name.
    pub fn gr(&self) -> GroupResource<'_> {
        GroupResource {
            group: &self.res.def.group,
            resource: &self.res.def.plural,
        }
    }

    /// The namespace of the request, for namespaced resources.
    pub fn namespace(&self) -> Option<&str> {
        if self.res.def.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    /// The object name from the path ("" for collections).
    pub fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }

    /// The storage key of the named object.
    pub fn key(&self) -> String {
        self.res.def.key(self.namespace(), self.name())
    }

    /// Whether `dryRun=All` was requested.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.all("dryRun") {
            [] => Ok(false),
            [v] if v == "All" => Ok(true),
            other => Err(ApiError::bad_request(format!(
                "invalid dryRun {other:?}: the only supported value is \"All\""
            ))),
        }
    }

    /// The current object from the consistent cache, or 404.
    pub async fn current(&self) -> Result<Arc<Value>, ApiError> {
        self.state
            .cache
            .wait_for(self.state.store.current_revision())
            .await;
        self.state
            .cache
            .get(&self.key())
            .ok_or_else(|| ApiError::not_found(self.gr(), self.name()))
    }
}

/// Serve a resource request.
pub async fn dispatch(ctx: Ctx, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    if ctx.res.def.namespaced
        && ctx.info.namespace.is_none()
        && !matches!(ctx.info.verb, Verb::List | Verb::Watch)
    {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = ctx.info.subresource.as_deref() {
        let known = ledge_api::Subresource::parse(sub).filter(|s| ctx.res.def.has(*s));
        return match known {
            Some(s) => subresource::subresource(ctx, s, body).await,
            None => Err(ApiError::path_not_found()),
        };
    }
    match ctx.info.verb {
        Verb::Get => read::get(ctx).await,
        Verb::List => read::list(ctx).await,
        Verb::Watch => watch::watch(ctx).await,
        Verb::Create => write::create(ctx, body).await,
        Verb::Update => write::update(ctx, body).await,
        Verb::Patch => write::patch(ctx, body).await,
        Verb::Delete => delete::delete(ctx, body).await,
        Verb::DeleteCollection => delete::delete_collection(ctx, body).await,
    }
}

/// Field paths a field selector may use for a resource (upstream's per-kind field label
/// conversion funcs); `metadata.name` and `metadata.namespace` work everywhere.
fn field_supported(res: &Resource, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let allowed: &[&str] = match (res.def.group.as_str(), res.def.plural.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") | ("events.k8s.io", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("apps", "replicasets") | ("", "replicationcontrollers") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    };
    allowed.contains(&field)
}

/// Label and field selectors of a list or watch.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    /// Parse `labelSelector` and `fieldSelector`, rejecting unsupported fields with 400.
    pub fn from_query(ctx: &Ctx) -> Result<Self, ApiError> {
        let labels =
            match ctx
                .query
                .get("labelSelector")
                .filter(|s| !s.trim().is_empty())
            {
                Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match ctx
            .query
            .get("fieldSelector")
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => {
                let sel = FieldSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
                for req in sel.requirements() {
                    if !field_supported(&ctx.res, &req.field) {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {}",
                            req.field
                        )));
                    }
                }
                Some(sel)
            }
            None => None,
        };
        Ok(Self { labels, fields })
    }

    /// Whether no selector was given.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// Whether an object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(&object::labels(obj))
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(|path| ledge_api::selector::field_value(obj, path))
        {
            return false;
        }
        true
    }
}
