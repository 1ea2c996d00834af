//! Response bodies and content negotiation: JSON, YAML and Kubernetes `Table` out; JSON and
//! YAML in (JSON when `Content-Type` is missing, as upstream does for old clients).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use ledge_api::ApiError;
use serde_json::Value;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// How the client wants objects encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Plain JSON objects.
    Json,
    /// YAML objects.
    Yaml,
    /// `meta.k8s.io/v1 Table` (kubectl's human output).
    Table,
}

/// Pick the response encoding from `Accept`, in the client's order of preference.
pub fn negotiate(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Encoding::Json);
    };
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match media {
            "application/json" | "application/*" | "*/*" => match param("as") {
                None => return Ok(Encoding::Json),
                Some("Table") if param("g") == Some("meta.k8s.io") && param("v") == Some("v1") => {
                    return Ok(Encoding::Table);
                }
                // Other `as=` forms (v1beta1 tables, discovery) fall through to the next clause.
                Some(_) => {}
            },
            "application/yaml" => return Ok(Encoding::Yaml),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, "application/json", Bytes::from(bytes))
}

/// A response with an object in the negotiated encoding (Table is handled by the caller).
pub fn object_response(status: StatusCode, value: &Value, enc: Encoding) -> Response<Body> {
    match enc {
        Encoding::Yaml => {
            let text = serde_yaml::to_string(value).unwrap_or_default();
            bytes_response(status, "application/yaml", Bytes::from(text))
        }
        _ => json_response(status, value),
    }
}

/// A response with raw bytes and a content type.
pub fn bytes_response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The `Status` response for an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &err.to_status())
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// JSON (also when no Content-Type was sent).
    Json,
    /// YAML.
    Yaml,
    /// Kubernetes protobuf envelope.
    Protobuf,
}

/// Read the media type of the request body (parameters like `charset` are ignored).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decode a create/update body into JSON.
pub fn decode_object(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    let format = match media {
        "" | "application/json" | "*/*" => BodyFormat::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyFormat::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyFormat::Protobuf,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    decode_as(format, body)
}

/// Decode a body of a known format.
pub fn decode_as(format: BodyFormat, body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match format {
        BodyFormat::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding request body as JSON: {e}"))
        })?,
        BodyFormat::Yaml => serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding request body as YAML: {e}"))
        })?,
        BodyFormat::Protobuf => ledge_proto::decode(body).map_err(|e| {
            if e.is_unsupported() {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            } else {
                ApiError::bad_request(format!("error decoding protobuf request body: {e}"))
            }
        })?,
    };
    Ok(value)
}
