//! The client's error types: [`ClientError`], and the typed reasons under
//! its connection variants ([`ConnectError`], [`TlsError`]), so a caller
//! can tell a refused certificate from an unreachable broker without
//! reading text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// (unreachable address, handshake refused or timed out). `addr` is the
    /// broker address tried last; earlier failures are logged (`tracing`).
    #[error("cannot connect to the broker at {addr}: {source}")]
    Connect {
        /// The broker address that failed.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The TLS setup failed: the certificate to trust cannot be read or
    /// parsed, or the broker's certificate was rejected during the handshake.
    /// Never retried: trying again cannot change the answer.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
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

/// Why a connection to one broker address could not be made.
///
/// The `Display` of each variant includes its source's text, so a plain
/// `to_string()` (what the `felix` CLI prints) says everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The client's UDP socket (the QUIC endpoint) could not be bound or
    /// set up.
    #[error("cannot bind the client's UDP socket: {0}")]
    Bind(#[source] std::io::Error),
    /// quinn refused to start the handshake (for example an invalid server
    /// name or an unusable address).
    #[error("cannot start the handshake: {0}")]
    Start(#[source] quinn::ConnectError),
    /// The handshake or connection failed (refused, reset, timed out by
    /// QUIC's idle timer, wrong QUIC version).
    #[error("{0}")]
    Connection(#[source] quinn::ConnectionError),
    /// Nothing answered within the time this attempt was given.
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file to trust cannot be read.
    #[error("cannot read the certificate file {path}: {source}")]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The PEM text of the certificates to trust is malformed.
    #[error("cannot parse the certificates in {what}: {source}")]
    ParseCertificate {
        /// Where the PEM came from (a file name, or `certificate` for PEM
        /// given in the configuration).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The PEM text holds no certificate.
    #[error("{what}: no certificate found")]
    NoCertificate {
        /// Where the PEM came from.
        what: String,
    },
    /// rustls refused the configuration or a certificate to trust.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The rustls configuration cannot serve QUIC (no TLS 1.3 suite quinn
    /// can use).
    #[error("{0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The handshake with `addr` failed on a TLS error: usually the
    /// broker's certificate is not trusted or not for the server name.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The broker address.
        addr: SocketAddr,
        /// quinn's report (the TLS alert, or the local verifier's error).
        #[source]
        source: quinn::ConnectionError,
    },
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
            ClientError::Connect {
                addr: "127.0.0.1:5000".parse().expect("literal address"),
                source: ConnectError::TimedOut(Duration::from_millis(500)),
            }
            .to_string(),
            "cannot connect to the broker at 127.0.0.1:5000: no answer within 500 ms"
        );
        assert_eq!(
            ClientError::Tls(TlsError::NoCertificate {
                what: "cert.pem".into()
            })
            .to_string(),
            "TLS: cert.pem: no certificate found"
        );
        assert_eq!(
            ClientError::Tls(TlsError::ReadCertificate {
                path: "/x/cert.pem".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
            .to_string(),
            "TLS: cannot read the certificate file /x/cert.pem: entity not found"
        );
        assert_eq!(
            ClientError::Closed.to_string(),
            "the connection to the broker was closed"
        );
    }
}
