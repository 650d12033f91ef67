//! What to try next when connecting fails: the two mistakes people make
//! most (no broker where they point, a certificate that is not the
//! broker's) get a line of their own under the error, naming the flag to
//! look at. Decided on the client's typed errors, never on message text.

use felix_client::{ClientError, ConnectError, TlsError};

/// Where the CLI was pointed, to name in a hint.
pub(crate) struct Target<'a> {
    /// `--addr` as the user wrote it (host names kept).
    pub(crate) addr: &'a str,
    /// `--cert`, or `None` with `--insecure`.
    pub(crate) cert: Option<&'a std::path::Path>,
    /// `--server-name`.
    pub(crate) server_name: &'a str,
}

/// A hint for `error`, if it is one of the failures a hint can help with.
pub(crate) fn hint(error: &ClientError, target: &Target<'_>) -> Option<String> {
    match error {
        ClientError::Connect { source, .. } if nothing_answered(source) => Some(format!(
            "is the broker running at {}? (start one with `felix-broker`, or point --addr at it)",
            target.addr
        )),
        ClientError::Tls(TlsError::Handshake { .. }) => target.cert.map(|cert| {
            format!(
                "the broker's certificate does not match --cert {} (or is not for --server-name {}); \
                 a reference broker writes its own to .felix/tls/cert.pem in the directory it runs in",
                cert.display(),
                target.server_name
            )
        }),
        _ => None,
    }
}

/// No broker there: silence (a closed UDP port answers nothing QUIC
/// listens to), or a QUIC endpoint that refused the connection.
fn nothing_answered(source: &ConnectError) -> bool {
    use felix_client::quinn::{ConnectionError, TransportErrorCode};
    match source {
        ConnectError::TimedOut(_) => true,
        ConnectError::Connection(ConnectionError::TimedOut | ConnectionError::Reset) => true,
        ConnectError::Connection(ConnectionError::TransportError(t)) => {
            t.code == TransportErrorCode::CONNECTION_REFUSED
        }
        ConnectError::Connection(ConnectionError::ConnectionClosed(c)) => {
            c.error_code == TransportErrorCode::CONNECTION_REFUSED
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn target() -> Target<'static> {
        Target {
            addr: "localhost:5000",
            cert: Some(std::path::Path::new("certs/broker.pem")),
            server_name: "localhost",
        }
    }

    #[test]
    fn a_silent_address_asks_whether_the_broker_runs_there() {
        let e = ClientError::Connect {
            addr: "127.0.0.1:5000".parse().expect("literal"),
            source: ConnectError::TimedOut(Duration::from_secs(5)),
        };
        let h = hint(&e, &target()).expect("a hint");
        assert!(
            h.starts_with("is the broker running at localhost:5000?"),
            "{h}"
        );
    }

    #[test]
    fn other_failures_get_no_hint() {
        assert!(hint(&ClientError::Timeout, &target()).is_none());
        assert!(hint(&ClientError::AuthFailed("auth failed".into()), &target()).is_none());
        let bind = ClientError::Connect {
            addr: "0.0.0.0:0".parse().expect("literal"),
            source: ConnectError::Bind(std::io::Error::from(std::io::ErrorKind::AddrInUse)),
        };
        assert!(hint(&bind, &target()).is_none());
    }
}
