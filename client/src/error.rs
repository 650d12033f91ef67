//! The client's error type.

/// Why a client operation failed.
///
/// Errors that come from the broker's answers ([`AuthFailed`], [`Broker`],
/// the cursor errors) carry the broker's own text or numbers; errors about
/// the connection ([`Connect`], [`Closed`], [`Timeout`]) mean the operation
/// may be retried (the next operation reconnects).
///
/// [`AuthFailed`]: ClientError::AuthFailed
/// [`Broker`]: ClientError::Broker
/// [`Connect`]: ClientError::Connect
/// [`Closed`]: ClientError::Closed
/// [`Timeout`]: ClientError::Timeout
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection could be established within the connect timeout
    /// (unreachable address, handshake refused or timed out).
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    /// The TLS setup failed: the certificate to trust cannot be read or
    /// parsed, or the broker's certificate was rejected during the handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker refused the credentials; the text is the broker's
    /// (`auth failed`, `tenant mismatch`, ...).
    #[error("authentication refused by the broker: {0}")]
    AuthFailed(String),
    /// The start offset is older than the oldest event the broker still
    /// holds.
    #[error("offset {requested} is too old: the oldest retained offset is {available}")]
    CursorTooOld {
        /// The offset asked for.
        requested: u64,
        /// The oldest offset the broker still holds.
        available: u64,
    },
    /// The start offset is past the stream's tail.
    #[error("offset {requested} is in the future: the stream's tail is {available}")]
    CursorInFuture {
        /// The offset asked for.
        requested: u64,
        /// The stream's tail (the offset of the next event).
        available: u64,
    },
    /// The broker refused the request: an `error` frame, a `publish_error`
    /// or an error publish ack; the text is the broker's.
    #[error("the broker refused the request: {0}")]
    Broker(String),
    /// The broker sent bytes that are not a valid felix-wire frame.
    #[error("the broker sent an invalid frame: {0}")]
    Decode(#[from] felix_wire::DecodeError),
    /// The request cannot be encoded (for example a name longer than 65,535
    /// bytes, or a frame larger than the protocol allows).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] felix_wire::EncodeError),
    /// The broker sent a valid frame that does not belong where it came
    /// (a reply to another request, an unexpected message type).
    #[error("protocol violation by the broker: {0}")]
    Protocol(String),
    /// The broker did not answer within the request timeout.
    #[error("timed out waiting for the broker")]
    Timeout,
    /// The connection or stream was closed (by the broker, the network, or
    /// [`Client::close`](crate::Client::close)). The reason is logged at
    /// debug level (`tracing`).
    #[error("the connection to the broker was closed")]
    Closed,
    /// A local I/O error (for example binding the client's UDP socket).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// [`ClientError::Closed`], logging why at debug level.
pub(crate) fn closed(what: &str, why: impl std::fmt::Display) -> ClientError {
    tracing::debug!(%why, "{what}: closed");
    ClientError::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        assert_eq!(
            ClientError::CursorTooOld {
                requested: 1,
                available: 2
            }
            .to_string(),
            "offset 1 is too old: the oldest retained offset is 2"
        );
        assert_eq!(
            ClientError::AuthFailed("auth failed".into()).to_string(),
            "authentication refused by the broker: auth failed"
        );
        assert_eq!(
            ClientError::Closed.to_string(),
            "the connection to the broker was closed"
        );
    }
}
