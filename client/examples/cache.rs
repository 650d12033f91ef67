//! The broker's cache: store a value with a time to live, read it back,
//! and see a missing key.
//!
//! ```sh
//! felix-broker &                      # a dev broker on 127.0.0.1:5000
//! cargo run -p felix-client --example cache
//! ```

use std::time::Duration;

use felix_client::{Bytes, Client, ClientError};

#[path = "common/mod.rs"]
mod common;

/// What the example saw: the value read back, and what a key never
/// stored reads as.
#[derive(Debug)]
pub(crate) struct CacheTour {
    /// `session-42` after storing it.
    pub(crate) stored: Option<Bytes>,
    /// A key that was never stored.
    pub(crate) missing: Option<Bytes>,
}

/// Stores `value` under `session-42` in `cache` for a minute, then reads
/// it and a key that does not exist.
pub(crate) async fn tour(
    client: &Client,
    cache: &str,
    value: &[u8],
) -> Result<CacheTour, ClientError> {
    client
        .cache_put(
            "default",
            cache,
            "session-42",
            Bytes::copy_from_slice(value),
            Some(Duration::from_secs(60)),
        )
        .await?;
    Ok(CacheTour {
        stored: client.cache_get("default", cache, "session-42").await?,
        missing: client.cache_get("default", cache, "no-such-key").await?,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(common::config_from_env()?).await?;
    let seen = tour(&client, "example-sessions", b"user=ada").await?;
    match seen.stored {
        Some(v) => println!("session-42 = {}", String::from_utf8_lossy(&v)),
        None => println!("session-42 expired already"),
    }
    println!("no-such-key present: {}", seen.missing.is_some());
    client.close().await;
    Ok(())
}
