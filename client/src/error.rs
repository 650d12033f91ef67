//! The client's errors.

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect (address, handshake, timeout).
    #[error("connecting to the broker: {0}")]
    Connect(String),
    /// TLS configuration (certificate file, trust).
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker refused the credentials (`auth failed`, `tenant mismatch`).
    #[error("authentication refused: {0}")]
    AuthFailed(String),
    /// The start offset is older than the broker still holds.
    #[error("offset {requested} is too old: the oldest retained offset is {available}")]
    CursorTooOld {
        /// Asked for.
        requested: u64,
        /// Oldest retained.
        available: u64,
    },
    /// The start offset is past the stream's tail.
    #[error("offset {requested} is in the future: the tail is {available}")]
    CursorInFuture {
        /// Asked for.
        requested: u64,
        /// The tail.
        available: u64,
    },
    /// The broker answered with an error (`error` frame, `publish_error`, error ack).
    #[error("broker error: {0}")]
    Broker(String),
    /// The broker sent bytes that are not a valid frame.
    #[error("invalid frame from the broker: {0}")]
    Decode(#[from] felix_wire::DecodeError),
    /// A value cannot be encoded (e.g. a name longer than 65535 bytes).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] felix_wire::EncodeError),
    /// The broker answered out of protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection or stream closed.
    #[error("connection closed: {0}")]
    Closed(String),
}
