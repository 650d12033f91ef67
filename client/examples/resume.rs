//! A consumer that survives losing its broker: when the subscription ends
//! (the broker shut down, the network went away), it resumes from the
//! event after the last one it handled, on whichever broker the client
//! reaches now (the nodes of a cluster share offsets; docs/cluster.md).
//!
//! ```sh
//! FELIX_ADDR=node-a:5000,node-b:5000 cargo run -p felix-client --example resume
//! ```

use std::time::Duration;

use felix_client::{Client, ClientError, Event, StartPosition, Subscription, SubscriptionItem};

#[path = "common/mod.rs"]
mod common;

/// Reads `count` events of `stream` from the earliest the broker holds,
/// handing each to `handle`, resuming whenever the subscription ends.
/// Gaps (events the broker no longer held when resuming) are reported on
/// standard error.
pub(crate) async fn follow(
    client: &Client,
    stream: &str,
    count: usize,
    mut handle: impl FnMut(&Event),
) -> Result<(), ClientError> {
    let mut sub = client
        .subscribe("default", stream, StartPosition::Earliest)
        .await?;
    let mut seen = 0;
    while seen < count {
        match sub.next().await {
            Some(Ok(SubscriptionItem::Event(e))) => {
                handle(&e);
                seen += 1;
            }
            Some(Ok(SubscriptionItem::Gap { expected, got })) => {
                eprintln!("missed offsets {expected}..{got}");
            }
            Some(Err(e)) => {
                eprintln!(
                    "subscription lost ({e}); resuming at {:?}",
                    sub.resume_position()
                );
                sub = resume(client, &sub).await?;
            }
            None => {
                eprintln!(
                    "the broker ended the subscription; resuming at {:?}",
                    sub.resume_position()
                );
                sub = resume(client, &sub).await?;
            }
        }
    }
    Ok(())
}

/// [`Client::resume`], tried again while the failure is about the
/// connection (no broker reachable yet); anything else is final.
async fn resume(client: &Client, previous: &Subscription) -> Result<Subscription, ClientError> {
    let mut attempts = 0;
    loop {
        match client.resume(previous).await {
            Err(ClientError::Connect { .. } | ClientError::Closed | ClientError::Timeout)
                if attempts < 5 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            result => return result,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(common::config_from_env()?).await?;
    follow(&client, "example-orders", 10, |e| {
        let offset = e.offset.map_or("-".into(), |o| o.to_string());
        println!("{offset}\t{}", String::from_utf8_lossy(&e.payload));
    })
    .await?;
    client.close().await;
    Ok(())
}
