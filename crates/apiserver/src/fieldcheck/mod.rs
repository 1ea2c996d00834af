//! Server-side field validation: `?fieldValidation=Strict|Warn|Ignore` on create, update and
//! patch (upstream KEP-2885; conformance "FieldValidation", v1.27). Unknown fields — fields a
//! built-in kind's types do not have, fields a custom resource's schema would prune, unknown
//! `metadata` fields — and duplicate fields in the JSON body are
//!
//! - `Strict` (what kubectl sends by default): rejected with 400 BadRequest and upstream's
//!   wording, `strict decoding error: unknown field "spec.foo", duplicate field "spec.replicas"`;
//! - `Warn` (the default when the parameter is absent, as upstream since 1.27): accepted, each
//!   reported in a `Warning: 299 - "unknown field \"spec.foo\""` response header (kubectl
//!   prints them), unknown fields dropped;
//! - `Ignore`: unknown fields dropped silently.
//!
//! The check runs in front of the write handlers ([`screened`]) on the raw body: objects
//! (create, update) are walked whole; merge, strategic and apply patches are walked as partial
//! objects; JSON patches are applied to the stored object to see what they would add (and get
//! `remove` operations appended for it when it is to be dropped). Fields
//! the stored object already has are never reported, so objects written before validation
//! existed stay writable. Not covered: protobuf bodies (the decoder only knows declared
//! fields) and the binding/eviction subresources.

mod duplicates;
mod fields;
mod walk;

use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use ledge_api::{ApiError, StatusCause};
use serde_json::Value;

use crate::handlers::Ctx;
use crate::http::body::{self, Body};
use crate::http::request::Verb;
use crate::patch::{self, PatchKind};

pub use walk::MAX_ERRORS;

/// What the client asked to happen to unknown and duplicate fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and warn about them and about duplicates.
    Warn,
    /// Reject the request.
    Strict,
}

impl Directive {
    /// Parse the `fieldValidation` query value; absent or empty means `Warn`. Returns the
    /// offending value on error.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            "Ignore" => Ok(Self::Ignore),
            other => Err(other.to_string()),
        }
    }
}

/// Run a write `handler` on the request body after field validation: a `Strict` violation
/// answers 400 without running it, unknown fields are removed from the body it gets, and the
/// warnings of `Warn` are added to its response.
pub async fn screened<F, Fut>(ctx: Ctx, raw: Bytes, handler: F) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(Ctx, Bytes) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let (ctx, raw, warnings) = screen(ctx, raw).await?;
    let mut resp = handler(ctx, raw).await?;
    add_warnings(resp.headers_mut(), &warnings);
    Ok(resp)
}

/// Add `Warning: 299 - "<text>"` headers (RFC 7234 §5.5, as upstream's warning recorder).
pub fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_bytes(format!("299 - \"{quoted}\"").as_bytes()) {
            headers.append(header::WARNING, v);
        }
    }
}

/// What the body is checked against.
enum Target {
    /// A built-in definition, by upstream name.
    Builtin(&'static str),
    /// A custom resource version's structural schema.
    Custom(Value),
}

fn target(ctx: &Ctx) -> Option<Target> {
    let table = fields::table();
    match ctx.info.subresource.as_deref() {
        None | Some("status") => {}
        Some("scale") if !ctx.res.custom => {
            return table.kind("autoscaling/v1", "Scale").map(Target::Builtin);
        }
        Some(_) => return None,
    }
    let def = &ctx.res.def;
    if ctx.res.custom {
        crate::openapi::crd::version_schema(&ctx.state.cache, &def.group, &def.plural, &def.version)
            .map(Target::Custom)
    } else {
        table
            .kind(&def.api_version(), &def.kind)
            .map(Target::Builtin)
    }
}

/// How the body is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A whole object (create, update), JSON or YAML.
    Object { yaml: bool },
    /// A patch document.
    Patch(PatchKind),
}

fn form(ctx: &Ctx) -> Option<Form> {
    let media = body::content_type(&ctx.headers);
    if ctx.info.verb == Verb::Patch {
        return PatchKind::from_content_type(&media, &ctx.res)
            .ok()
            .map(Form::Patch);
    }
    match media.as_str() {
        "" | "application/json" | "*/*" => Some(Form::Object { yaml: false }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            Some(Form::Object { yaml: true })
        }
        // Protobuf bodies cannot carry undeclared fields; anything else fails decoding later.
        _ => None,
    }
}

fn parse(form: Form, raw: &[u8]) -> Option<Value> {
    let yaml = matches!(
        form,
        Form::Object { yaml: true } | Form::Patch(PatchKind::Apply)
    );
    if yaml {
        serde_yaml::from_slice(raw).ok()
    } else {
        serde_json::from_slice(raw).ok()
    }
}

fn options_kind(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "CreateOptions",
        Verb::Update => "UpdateOptions",
        _ => "PatchOptions",
    }
}

fn unsupported(verb: Verb, value: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        options_kind(verb),
        "",
        vec![StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "fieldValidation: Unsupported value: {value:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
            ),
            field: "fieldValidation".into(),
        }],
    )
}

/// Upstream's message for a rejected body: decoding errors of a whole object name its kind
/// (`transformDecodeError`), patch errors do not.
fn strict_error(ctx: &Ctx, form: Form, errors: &[String]) -> ApiError {
    let detail = format!("strict decoding error: {}", errors.join(", "));
    if matches!(form, Form::Patch(_)) {
        return ApiError::bad_request(detail);
    }
    let (kind, version) = if ctx.info.subresource.as_deref() == Some("scale") {
        ("Scale", "v1")
    } else {
        (ctx.res.def.kind.as_str(), ctx.res.def.version.as_str())
    };
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}"
    ))
}

/// Check and clean the body; returns the (possibly rewritten) request and the warnings.
async fn screen(mut ctx: Ctx, raw: Bytes) -> Result<(Ctx, Bytes, Vec<String>), ApiError> {
    let verb = ctx.info.verb;
    if !matches!(verb, Verb::Create | Verb::Update | Verb::Patch) {
        return Ok((ctx, raw, Vec::new()));
    }
    let directive =
        Directive::parse(ctx.query.get("fieldValidation")).map_err(|v| unsupported(verb, &v))?;
    let (Some(form), Some(target)) = (form(&ctx), target(&ctx)) else {
        return Ok((ctx, raw, Vec::new()));
    };
    let Some(mut value) = parse(form, &raw) else {
        // Not decodable: the handler answers with the decoding error.
        return Ok((ctx, raw, Vec::new()));
    };
    // The stored object, where the body has its shape (not for the Scale view).
    let same_shape = ctx.info.subresource.as_deref() != Some("scale");
    let old = match (verb, form) {
        (Verb::Update, _) | (_, Form::Patch(PatchKind::Json)) if same_shape => {
            ctx.current().await.ok()
        }
        _ => None,
    };
    let table = fields::table();
    let prune = directive != Directive::Strict;
    let mut walk = match form {
        Form::Patch(PatchKind::Json) => {
            // What the operations would add: the patched object, minus what is stored already.
            let Some(current) = old.as_deref() else {
                return Ok((ctx, raw, Vec::new()));
            };
            let Ok(mut patched) =
                patch::apply_patch(PatchKind::Json, &ctx.res, current, &value, "", false)
            else {
                return Ok((ctx, raw, Vec::new()));
            };
            let mut w = walk::Walk::new(table, false, false);
            check(&mut w, &mut patched, &target, Some(current));
            if prune && let Some(ops) = value.as_array_mut() {
                // Dropping what the operations would add: remove it again at the end.
                for p in &w.pointers {
                    ops.push(serde_json::json!({"op": "remove", "path": p}));
                }
            }
            w
        }
        Form::Patch(_) => {
            let mut w = walk::Walk::new(table, prune, true);
            check(&mut w, &mut value, &target, None);
            w
        }
        Form::Object { .. } => {
            let mut w = walk::Walk::new(table, prune, false);
            check(&mut w, &mut value, &target, old.as_deref());
            w
        }
    };
    let mut errors: Vec<String> = std::mem::take(&mut walk.unknown)
        .into_iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    if directive != Directive::Ignore && form != Form::Patch(PatchKind::Json) {
        for d in duplicates::find(&raw) {
            if errors.len() < MAX_ERRORS {
                errors.push(format!("duplicate field {d:?}"));
            }
        }
    }
    let warnings = match directive {
        Directive::Strict if !errors.is_empty() => return Err(strict_error(&ctx, form, &errors)),
        Directive::Warn => errors,
        _ => Vec::new(),
    };
    let rewritten = match form {
        Form::Patch(PatchKind::Json) => !walk.pointers.is_empty(),
        _ => walk.pruned(),
    };
    if !prune || !rewritten {
        return Ok((ctx, raw, warnings));
    }
    // Hand the handler the body without the dropped fields, as JSON (which is also YAML, so an
    // apply patch keeps its media type).
    let Ok(json) = serde_json::to_vec(&value) else {
        return Ok((ctx, raw, warnings));
    };
    if form == (Form::Object { yaml: true }) {
        ctx.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok((ctx, Bytes::from(json), warnings))
}

fn check(w: &mut walk::Walk<'_>, v: &mut Value, target: &Target, old: Option<&Value>) {
    match target {
        Target::Builtin(def) => w.builtin(v, def, old),
        Target::Custom(schema) => w.custom(v, schema, old),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_defaults_to_warn() {
        assert_eq!(Directive::parse(None), Ok(Directive::Warn));
        assert_eq!(Directive::parse(Some("")), Ok(Directive::Warn));
        assert_eq!(Directive::parse(Some("Strict")), Ok(Directive::Strict));
        assert_eq!(Directive::parse(Some("Ignore")), Ok(Directive::Ignore));
        assert_eq!(Directive::parse(Some("strict")), Err("strict".into()));
    }

    #[test]
    fn warnings_are_quoted_like_upstream() {
        let mut h = HeaderMap::new();
        add_warnings(&mut h, &["unknown field \"spec.foo\"".into()]);
        assert_eq!(
            h.get(header::WARNING).and_then(|v| v.to_str().ok()),
            Some(r#"299 - "unknown field \"spec.foo\"""#)
        );
    }

    #[test]
    fn unsupported_directives_name_the_options() {
        let e = unsupported(Verb::Create, "Loud");
        assert_eq!(e.code, 422);
        assert!(e.message.contains("CreateOptions"), "{}", e.message);
        assert!(
            e.message.contains(r#"Unsupported value: "Loud""#),
            "{}",
            e.message
        );
    }
}
