//! The HTTPS front: TLS with optional client certificates, HTTP/1.1 and HTTP/2, and routing of
//! every path to health, version, discovery, OpenAPI or the resource pipeline.

pub mod body;
pub mod query;
pub mod request;
pub mod server;
pub mod websocket;
