//! Publish a few messages and read them back from a subscription, using
//! the subscription as a `futures::Stream`.
//!
//! ```sh
//! felix-broker &                      # a dev broker on 127.0.0.1:5000
//! cargo run -p felix-client --example pubsub
//! ```
//!
//! `FELIX_ADDR`, `FELIX_CERT`, `FELIX_TENANT` and `FELIX_TOKEN` point it
//! elsewhere (as for the `felix` CLI).

use futures_util::StreamExt as _;

use felix_client::{Ack, Bytes, Client, ClientError, StartPosition, SubscriptionItem};

#[path = "common/mod.rs"]
mod common;

/// Subscribes to `stream` from its tail, publishes `messages` (acked, one
/// by one), and returns them as the subscription delivered them: offset
/// and payload, gap reports left out.
pub(crate) async fn publish_and_read_back(
    client: &Client,
    stream: &str,
    messages: &[&str],
) -> Result<Vec<(Option<u64>, Bytes)>, ClientError> {
    // Subscribe first: `Latest` delivers only what is published after.
    let sub = client
        .subscribe("default", stream, StartPosition::Latest)
        .await?;
    for m in messages {
        client
            .publish(
                "default",
                stream,
                Bytes::copy_from_slice(m.as_bytes()),
                Ack::PerMessage,
            )
            .await?;
    }
    // The `Stream` view: keep the events, stop after as many as were sent.
    sub.filter_map(|item| async move {
        match item {
            Ok(SubscriptionItem::Event(e)) => Some(Ok((e.offset, e.payload))),
            Ok(SubscriptionItem::Gap { expected, got }) => {
                eprintln!("missed offsets {expected}..{got}");
                None
            }
            Err(e) => Some(Err(e)),
        }
    })
    .take(messages.len())
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(common::config_from_env()?).await?;
    let got = publish_and_read_back(&client, "example-orders", &["one", "two", "three"]).await?;
    for (offset, payload) in got {
        let offset = offset.map_or("-".into(), |o| o.to_string());
        println!("{offset}\t{}", String::from_utf8_lossy(&payload));
    }
    client.close().await;
    Ok(())
}
