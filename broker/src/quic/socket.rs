//! The broker's UDP socket, with kernel buffers sized for fanout bursts.
//!
//! One publish to thousands of subscribers makes thousands of clients send
//! ACKs at once, all into this one socket. With the kernel's default
//! receive buffer (about 208 KiB) a burst overflows it and the kernel drops
//! datagrams, which QUIC then retransmits (measured: ~16,000 drops setting
//! up 25,000 subscriptions). quinn does not size the buffers itself, so the
//! broker binds the socket and asks for [`BUFFER_BYTES`] each way; Linux
//! caps the request at `net.core.rmem_max` / `wmem_max`.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer size the broker asks the kernel for.
pub(crate) const BUFFER_BYTES: usize = 4 << 20;

/// Binds a UDP socket on `addr` with enlarged kernel buffers.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    bind_with(addr, false)
}

/// Binds `n` UDP sockets on the same `addr` with `SO_REUSEPORT`: the
/// kernel hashes each peer's address and port to one of them, so all of a
/// connection's datagrams reach the same socket (the shard that accepted
/// it). A port of 0 is chosen by the first bind and shared by the rest.
pub(crate) fn bind_shared(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    let first = bind_with(addr, true)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..n {
        sockets.push(bind_with(addr, true)?);
    }
    Ok(sockets)
}

fn bind_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(BUFFER_BYTES)),
        ("send", socket.set_send_buffer_size(BUFFER_BYTES)),
    ] {
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not enlarge the UDP {what} buffer; bursts may be dropped by the kernel");
        }
    }
    socket.bind(&addr.into())?;
    let recv = socket.recv_buffer_size().unwrap_or(0);
    let send = socket.send_buffer_size().unwrap_or(0);
    tracing::debug!(recv, send, "UDP socket buffers");
    // Linux grants at most `net.core.rmem_max` without an error (and
    // reports twice what it granted), so check what was granted.
    if recv < BUFFER_BYTES {
        tracing::warn!(
            granted = recv,
            wanted = BUFFER_BYTES,
            "the kernel capped the UDP receive buffer; fan-out bursts may be dropped \
             (raise it with: sysctl -w net.core.rmem_max=4194304 net.core.wmem_max=4194304)"
        );
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_sockets_take_one_port_and_each_receives_some_peers() {
        let sockets = bind_shared("127.0.0.1:0".parse().expect("literal"), 2).expect("bind");
        let addr = sockets[0].local_addr().expect("addr");
        assert_eq!(sockets[1].local_addr().expect("addr"), addr);
        for s in &sockets {
            s.set_nonblocking(true).expect("nonblocking");
        }
        // Peers on different ports hash to one socket or the other; over
        // 64 of them both sockets get some (the chance of not: 2^-63).
        let peers: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("peer"))
            .collect();
        for p in &peers {
            p.send_to(b"x", addr).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut buf = [0u8; 8];
        let counts: Vec<usize> = sockets
            .iter()
            .map(|s| std::iter::from_fn(|| s.recv(&mut buf).ok()).count())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 64, "{counts:?}");
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }

    #[test]
    fn binds_with_a_receive_buffer_larger_than_the_default_when_allowed() {
        const KERNEL_DEFAULT: usize = 212_992;
        let socket = bind("127.0.0.1:0".parse().expect("literal")).expect("bind");
        let s = Socket::from(socket);
        assert_ne!(
            s.local_addr()
                .expect("addr")
                .as_socket()
                .expect("inet")
                .port(),
            0
        );
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if rmem_max > KERNEL_DEFAULT {
            assert!(s.recv_buffer_size().expect("getsockopt") > KERNEL_DEFAULT);
        }
    }
}
