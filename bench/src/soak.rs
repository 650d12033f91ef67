//! `felix-bench soak`: a mixed pub/sub + cache load for a fixed duration
//! against the broker the connection flags name, with every published
//! event accounted for at every subscriber (`scripts/soak` runs it against
//! a broker process and watches the broker's memory).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_client::{Ack, Client, SubscriptionItem};
use felix_wire::StartPosition;

use crate::target::ConnectArgs;

/// `felix-bench soak` parameters.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Subscribers reading the soak stream.
    #[arg(long, default_value_t = 4)]
    pub(crate) subscribers: usize,
    /// Events per published batch.
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 128)]
    pub(crate) payload: usize,
    /// Print the report as one JSON line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `felix-bench soak` and prints its report; exit 1 if any event is
/// unaccounted, any operation failed or any cached value came back wrong.
pub(crate) async fn run(connect: &ConnectArgs, args: &SoakArgs) -> Result<ExitCode, String> {
    let client = Client::connect(connect.client_config()?)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "felix-bench: soaking {} for {} s with {} subscribers...",
        connect.addr, args.seconds, args.subscribers
    );
    let report = soak(
        &client,
        &connect.namespace,
        Duration::from_secs(args.seconds),
        args.subscribers,
        args.batch,
        args.payload,
    )
    .await;
    client.close().await;
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!("{}", report.summary());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Set in the published counter once the publisher has stopped.
const DONE: u64 = 1 << 63;

/// What a soak run saw.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) seconds: f64,
    pub(crate) published: u64,
    pub(crate) subscribers: usize,
    pub(crate) delivered_per_subscriber: Vec<u64>,
    pub(crate) gaps_per_subscriber: Vec<u64>,
    /// Published events neither delivered nor reported as a gap.
    pub(crate) unaccounted: u64,
    pub(crate) cache_ops: u64,
    pub(crate) cache_mismatches: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Report {
    /// Nothing unaccounted, failed or mismatched.
    fn is_clean(&self) -> bool {
        self.unaccounted == 0 && self.errors == 0 && self.cache_mismatches == 0
    }

    /// The report as one line of text.
    fn summary(&self) -> String {
        format!(
            "soak: {:.0} s, {} events published ({:.0}/s), {} subscribers delivered {:?} (gaps {:?}), {} unaccounted; {} cache ops, {} mismatches; {} errors{}",
            self.seconds,
            self.published,
            self.published as f64 / self.seconds.max(0.001),
            self.subscribers,
            self.delivered_per_subscriber,
            self.gaps_per_subscriber,
            self.unaccounted,
            self.cache_ops,
            self.cache_mismatches,
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }
}

/// Runs the soak: `subscribers` readers, one publisher of batches of
/// `batch` events, and cache puts and gets with verification.
async fn soak(
    client: &Client,
    namespace: &str,
    duration: Duration,
    subscribers: usize,
    batch: usize,
    payload: usize,
) -> Report {
    let stream = format!("soak-{}", std::process::id());
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let note = {
        let errors = errors.clone();
        let first_error = first_error.clone();
        move |e: String| {
            errors.fetch_add(1, Ordering::Relaxed);
            first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        }
    };
    let published = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut sub = match client
            .subscribe(namespace, &stream, StartPosition::Latest)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                note(format!("subscribe: {e}"));
                continue;
            }
        };
        let published = published.clone();
        let note = note.clone();
        readers.push(tokio::spawn(async move {
            let (mut delivered, mut gaps) = (0u64, 0u64);
            let mut quiet_since = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    Ok(Some(Ok(SubscriptionItem::Event(_)))) => {
                        delivered += 1;
                        quiet_since = Instant::now();
                    }
                    Ok(Some(Ok(SubscriptionItem::Gap { expected, got }))) => gaps += got - expected,
                    Ok(Some(Err(e))) => {
                        note(format!("subscription: {e}"));
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
                // After the publisher stopped: read until everything is
                // accounted for, or nothing has arrived for 5 s.
                let p = published.load(Ordering::Acquire);
                if p & DONE != 0
                    && (delivered + gaps >= p & !DONE
                        || quiet_since.elapsed() > Duration::from_secs(5))
                {
                    break;
                }
            }
            (delivered, gaps)
        }));
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut cache_ops = 0u64;
    let mut cache_mismatches = 0u64;
    let body = Bytes::from(vec![b'x'; payload]);
    while t0.elapsed() < duration {
        let payloads: Vec<Bytes> = (0..batch).map(|_| body.clone()).collect();
        match client
            .publish_batch(namespace, &stream, payloads, Ack::PerBatch)
            .await
        {
            Ok(()) => n += batch as u64,
            Err(e) => note(format!("publish: {e}")),
        }
        published.store(n, Ordering::Release);
        let key = format!("k{}", n % 1024);
        let value = Bytes::from(n.to_string());
        match client
            .cache_put(
                namespace,
                "soak",
                &key,
                value.clone(),
                Some(Duration::from_secs(30)),
            )
            .await
        {
            Ok(()) => match client.cache_get(namespace, "soak", &key).await {
                Ok(Some(v)) if v == value => {}
                Ok(_) => cache_mismatches += 1,
                Err(e) => note(format!("cache_get: {e}")),
            },
            Err(e) => note(format!("cache_put: {e}")),
        }
        cache_ops += 2;
    }
    published.store(n | DONE, Ordering::Release);
    let mut delivered_per_subscriber = Vec::new();
    let mut gaps_per_subscriber = Vec::new();
    let mut unaccounted = 0;
    for r in readers {
        match r.await {
            Ok((d, g)) => {
                unaccounted += n.saturating_sub(d + g);
                delivered_per_subscriber.push(d);
                gaps_per_subscriber.push(g);
            }
            Err(e) => {
                note(format!("a subscriber task failed: {e}"));
                unaccounted += n;
            }
        }
    }
    let first_error = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Report {
        seconds: t0.elapsed().as_secs_f64(),
        published: n,
        subscribers: delivered_per_subscriber.len(),
        delivered_per_subscriber,
        gaps_per_subscriber,
        unaccounted,
        cache_ops,
        cache_mismatches,
        errors: errors.load(Ordering::Relaxed),
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_accounts_for_every_event() {
        let (broker, config) = crate::target::test_broker();
        let client = Client::connect(config).await.expect("connect");
        let r = soak(&client, "default", Duration::from_millis(300), 2, 4, 16).await;
        client.close().await;
        broker.shutdown().await;
        assert!(r.is_clean(), "{}", r.summary());
        assert!(r.published > 0 && r.cache_ops > 0);
        assert_eq!(r.delivered_per_subscriber, [r.published, r.published]);
        assert!(r.summary().starts_with("soak: "));
    }
}
