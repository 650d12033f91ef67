//! The tokio runtime the broker runs on: how many worker threads, and
//! whether idle workers keep polling instead of sleeping.
//!
//! Busy polling exists because waking a sleeping thread is slow on
//! virtual machines: 45-60 us on the 2-core VMs we measure on, more than a
//! whole QUIC round trip (17 us when both ends share a thread). A worker
//! that never sleeps picks up a packet or a task as soon as it is ready.
//! With a publisher and a subscriber in another process (each with one
//! worker), acked publish-to-delivery p50 fell from about 95-120 us to
//! 28 us. The cost is every worker's core at 100 % all the time, whether
//! or not there is work, so it is off by default and meant for dedicated
//! cores. tokio has no spin-before-park setting, so one task per worker
//! yields in a loop: a worker with a runnable task polls the I/O driver
//! without blocking instead of parking.

use tokio::runtime::{Builder, Handle, Runtime};

/// A multi-threaded runtime with `worker_threads` workers (`None`: one
/// per core) and every driver (I/O, time) enabled.
pub fn build(worker_threads: Option<usize>) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = worker_threads {
        builder.worker_threads(n.max(1));
    }
    builder.build()
}

/// Keeps every worker of `runtime` busy polling until the runtime shuts
/// down: one task per worker that only yields. tokio does not pin tasks to
/// workers; a sleeping worker steals runnable tasks, so the pollers spread
/// out, but two may share a worker for a while.
pub fn start_busy_polling(runtime: &Handle) {
    for _ in 0..runtime.metrics().num_workers() {
        runtime.spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_polling_runtime_still_runs_timers_io_and_other_tasks() {
        let rt = build(Some(1)).expect("runtime");
        start_busy_polling(rt.handle());
        let answer = rt.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = socket.local_addr().expect("addr");
            let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            peer.send_to(b"ping", addr).await.expect("send");
            let mut buf = [0u8; 4];
            let task =
                tokio::spawn(async move { socket.recv(&mut buf).await.map(|n| buf[..n].to_vec()) });
            task.await.expect("task").expect("recv")
        });
        assert_eq!(answer, b"ping");
        // Dropping the runtime ends the pollers.
        drop(rt);
    }
}
