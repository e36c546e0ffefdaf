//! Size limits of the WebSession contract (see `web-session.capnp` and SPEC.md, "Limits").
//! The bridge checks every one of them on what it receives, from either side.

/// Longest path with query, in bytes. Longer: 414.
pub const MAX_PATH: usize = 8 * 1024;
/// Most header fields in a request or response. More: 431 (request) or 502 (response).
pub const MAX_HEADER_COUNT: usize = 100;
/// Longest single header field, name plus value, in bytes.
pub const MAX_HEADER_FIELD: usize = 16 * 1024;
/// Most bytes in all header names and values together.
pub const MAX_HEADER_TOTAL: usize = 64 * 1024;
/// Largest body carried inline in a `Request` or `Response`.
pub const MAX_INLINE_BODY: usize = 64 * 1024;
/// Largest `data` of one `ByteStream.write`.
pub const MAX_WRITE: usize = 64 * 1024;
/// Largest WebSocket message, either direction.
pub const MAX_WS_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest ping or pong payload (RFC 6455 control frame limit).
pub const MAX_WS_CONTROL: usize = 125;
/// Longest WebSocket close reason in bytes (RFC 6455: 125 minus the 2-byte code).
pub const MAX_WS_CLOSE_REASON: usize = 123;
/// Default largest request body the bridge forwards (`--max-request-body`).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 4 << 30;
/// Idle keep-alive connections kept open to the app. Fewer than the requests a busy grain has
/// in flight makes every request beyond it open (and the app accept) a new connection: with 8,
/// 32 concurrent requests through the gateway cost the echo app twice its CPU per request
/// (BENCHMARKS.md, session 5).
pub const POOL_IDLE: usize = 32;
/// Request body chunks buffered between `ByteStream.write` and the app's socket.
pub const REQUEST_BODY_QUEUE: usize = 4;
/// `Request.body.streamed` / `Response.body.streamed` value for an unknown length.
pub const UNKNOWN_LENGTH: u64 = u64::MAX;
