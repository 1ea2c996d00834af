//! The reverse tunnel's wire contract, shared by the agent that opens it and the server that
//! accepts it: the agent dials `GET PATH` with `Upgrade: PROTOCOL`; after the `101` the server
//! speaks HTTP/2 as the client. An agent offers its lease interval in [`RENEW_PARAM`]
//! (milliseconds); a server that renews the node's Lease while the tunnel lives says so with
//! [`RENEW_HEADER`].

/// The path agents open their tunnel on.
pub const PATH: &str = "/ledge/v1/tunnel";
/// The `Upgrade` protocol name.
pub const PROTOCOL: &str = "ledge-tunnel";
/// The query parameter in which an agent offers its lease interval, in milliseconds.
pub const RENEW_PARAM: &str = "renewMillis";
/// The `101` response header by which the server accepts to renew (its interval, ms).
pub const RENEW_HEADER: &str = "ledge-lease-renewal";
