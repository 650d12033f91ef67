//! Shard threads: one single-threaded tokio runtime per thread, each with
//! its own quinn endpoint on the broker's shared port.
//!
//! On a multi-threaded runtime one request hops between tasks (endpoint
//! driver, connection driver, stream task, event writer) that may sit on
//! different workers, and waking a sleeping worker costs 45-60 us on the
//! 2-core VMs we measure on (`../shared/peer-baselines.md`). A shard keeps
//! a connection's every task on one thread: only fan-out to a subscriber
//! on another shard crosses threads.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{accept_loop, new_endpoint, AcceptContext};

/// How the broker spreads its connections over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shards {
    /// Shard threads, each with its own endpoint and runtime; 0 serves on
    /// the caller's runtime with one endpoint.
    pub count: usize,
    /// Shard threads poll instead of sleeping when idle (see
    /// [`crate::runtime::start_busy_polling`]).
    pub busy_poll: bool,
}

/// A running shard thread; dropping it tells the thread to stop.
pub(crate) struct ShardThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShardThread {
    /// Starts shard `index` serving on `socket`: returns the thread, its
    /// endpoint and its accept loop's task.
    pub(crate) fn start(
        index: usize,
        busy_poll: bool,
        socket: std::net::UdpSocket,
        server_config: quinn::ServerConfig,
        accept: Arc<AcceptContext>,
    ) -> std::io::Result<(ShardThread, quinn::Endpoint, tokio::task::JoinHandle<()>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The endpoint's driver and the accept loop are spawned on the
        // shard's runtime, which starts running them once its thread does.
        let (endpoint, accept_task) = {
            let guard = runtime.enter();
            let endpoint = match new_endpoint(server_config, socket) {
                Ok(e) => e,
                Err(e) => {
                    drop(guard);
                    // Dropping a runtime inside the caller's async context
                    // would panic; this one never ran anything.
                    runtime.shutdown_background();
                    return Err(e);
                }
            };
            let task = tokio::spawn(accept_loop(endpoint.clone(), accept));
            if busy_poll {
                tokio::spawn(async {
                    loop {
                        tokio::task::yield_now().await;
                    }
                });
            }
            (endpoint, task)
        };
        let (stop, stopped) = oneshot::channel::<()>();
        // The runtime goes to the thread, which drops it outside any async
        // context; if the thread cannot start, it comes back here.
        let runtime = Arc::new(std::sync::Mutex::new(Some(runtime)));
        let for_thread = runtime.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("felix-shard-{index}"))
            .spawn(move || {
                let runtime = for_thread.lock().ok().and_then(|mut r| r.take());
                if let Some(runtime) = runtime {
                    // Either a stop or a dropped handle ends the shard; its
                    // remaining tasks are dropped with the runtime.
                    let _ = runtime.block_on(stopped);
                }
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                if let Some(rt) = runtime.lock().ok().and_then(|mut r| r.take()) {
                    rt.shutdown_background();
                }
                return Err(e);
            }
        };
        Ok((
            ShardThread {
                stop: Some(stop),
                thread: Some(thread),
            },
            endpoint,
            accept_task,
        ))
    }

    /// Stops the shard's runtime and waits for its thread to end.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ShardThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
