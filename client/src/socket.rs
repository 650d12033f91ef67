//! The client's UDP socket, with kernel buffers sized for fan-out.
//!
//! All of a client's connections share one UDP socket, so a client with
//! several busy subscriptions receives bursts of many datagrams at once
//! (at 10 subscribers of 64 x 4 KiB batches, hundreds of MB/s). With the
//! kernel's default receive buffer (about 208 KiB) the kernel dropped about
//! 3.5 % of them (`RcvbufErrors` in `/proc/net/snmp`). QUIC recovers every
//! loss, but each one also halves the congestion window. quinn does not
//! size the buffers itself, so the client binds the socket and asks for
//! [`BUFFER_BYTES`] each way. Linux caps the request at
//! `net.core.rmem_max` / `wmem_max` (212,992 bytes on a stock kernel; see
//! docs/operations.md).

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer size the client asks the kernel for.
const BUFFER_BYTES: usize = 4 << 20;

/// Binds a UDP socket on `addr` with enlarged kernel buffers (a refusal
/// to enlarge them is logged, not fatal).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(BUFFER_BYTES) {
        tracing::warn!(error = %e, "could not enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(BUFFER_BYTES) {
        tracing::warn!(error = %e, "could not enlarge the UDP send buffer");
    }
    socket.bind(&addr.into())?;
    // Linux grants at most `net.core.rmem_max` without an error (and
    // reports twice what it granted), so say what was granted.
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < BUFFER_BYTES {
        tracing::debug!(
            granted,
            wanted = BUFFER_BYTES,
            "the kernel capped the UDP receive buffer (net.core.rmem_max)"
        );
    }
    Ok(socket.into())
}
