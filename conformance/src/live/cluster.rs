//! Cross-node cases (`felix-conformance cluster --addr A --addr B ...`):
//! what brokers that claim to serve as one cluster (docs/cluster.md) must
//! show between nodes. Run the live suite (`broker --addr X`) against
//! each node for everything else.
//!
//! Node A (the first `--addr`) publishes or writes; every other node
//! reads. Each case opens its own connections, and uses a fresh stream
//! and fresh cache keys, like the live suite.
//!
//! What is demanded:
//! - publish order and offsets are the same on every node (offsets, when
//!   a node sends them on live batches, are equal; the tails found by the
//!   `in_future` probe are equal either way);
//! - publishers on different nodes interleave in one order seen everywhere;
//! - a subscriber resumes on another node from an offset read on the first:
//!   no gap, no duplicate;
//! - a cache write on one node is read on the others, and its expiry is
//!   seen on every node.

use std::time::Duration;

use bytes::Bytes;
use felix_wire::StartPosition;

use super::cases::{expect_cache_ok, expect_value, get, key, probe_tail, put, tail};
use super::{publish_acked, read_events, CaseError, CaseFuture, Ctx, LiveConfig};
use crate::case::Level;
use crate::peer::{Peer, Target};

/// The nodes under test, and the suite's settings (the first node's
/// [`LiveConfig`]; its `target` is node A).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Settings shared by every node: namespace, stream, cache, timeout,
    /// and node A as `target`.
    pub live: LiveConfig,
    /// Every node, A first (at least two).
    pub nodes: Vec<Target>,
}

/// A cross-node case's context.
pub struct ClusterCtx {
    /// Builds the messages and names the streams (node A's context).
    pub ctx: Ctx,
    nodes: Vec<Target>,
}

impl ClusterCtx {
    /// A context with a run-unique nonce for stream names.
    pub fn new(cfg: ClusterConfig) -> ClusterCtx {
        ClusterCtx {
            ctx: Ctx::new(cfg.live),
            nodes: cfg.nodes,
        }
    }

    /// A connection to node `i` (0 is A).
    async fn peer(&self, i: usize) -> Result<Peer, String> {
        Peer::connect(&self.nodes[i], self.ctx.cfg.timeout)
            .await
            .map_err(|e| format!("{}: {e}", self.name(i)))
    }

    /// One connection to each node, A first.
    async fn peers(&self) -> Result<Vec<Peer>, String> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            out.push(self.peer(i).await?);
        }
        Ok(out)
    }

    /// `node B (127.0.0.1:5001)`.
    fn name(&self, i: usize) -> String {
        let letter = char::from(b'A' + (i % 26) as u8);
        format!("node {letter} ({})", self.nodes[i].addr)
    }
}

/// One cross-node case.
pub struct ClusterCase {
    /// Stable id.
    pub id: &'static str,
    /// Level.
    pub level: Level,
    /// What it checks, one line.
    pub about: &'static str,
    /// The check.
    pub run: for<'a> fn(&'a ClusterCtx) -> CaseFuture<'a>,
}

macro_rules! case {
    ($id:literal, $level:ident, $about:literal, $f:ident) => {
        ClusterCase {
            id: $id,
            level: Level::$level,
            about: $about,
            run: |ctx| Box::pin(async move { $f(ctx).await.map_err(CaseError::from) }),
        }
    };
}

/// Every cross-node case, in running order.
pub fn all() -> Vec<ClusterCase> {
    vec![
        case!("cluster/pubsub/order_and_offsets", Required, "events published on A reach subscribers on every node in publish order, with the same offsets and the same tail everywhere", order_and_offsets),
        case!("cluster/pubsub/one_order_for_publishers_on_two_nodes", Required, "publishers on A and B at once: every subscriber, on every node, sees one and the same order", one_order),
        case!("cluster/pubsub/resume_on_another_node", Required, "a subscriber that read up to an offset on A resumes on B from the next one: no gap, no duplicate, then live", resume_elsewhere),
        case!("cluster/cache/put_on_one_get_on_another", Required, "a cache put on A is read on every node; an overwrite on B is read on A", cache_across),
        case!("cluster/cache/ttl_expiry_everywhere", Required, "a value with ttl_ms written on A expires on every node; ttl 0 written on B is missing on A", cache_ttl_everywhere),
    ]
}

/// Payloads `{tag}{i}` for `range`.
fn payloads(tag: &str, range: std::ops::Range<u64>) -> Vec<Bytes> {
    range.map(|i| Bytes::from(format!("{tag}{i}"))).collect()
}

async fn order_and_offsets(c: &ClusterCtx) -> Result<(), String> {
    let ctx = &c.ctx;
    let stream = ctx.stream("cluster-order");
    let peers = c.peers().await?;
    // The stream exists (a marker), and every node knows its tail.
    let before = tail(ctx, &peers[0], &stream).await?;
    let mut readers = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let r = ctx
            .subscribe(peer, &stream, 1, StartPosition::Latest)
            .await
            .map_err(|e| format!("subscribing on {}: {e}", c.name(i)))?;
        readers.push(r);
    }
    let mut control = peers[0].control().await?;
    for i in 0..20 {
        publish_acked(ctx, &mut control, &stream, &format!("o{i}"), 100 + i).await?;
    }
    let want = payloads("o", 0..20);
    for (i, r) in readers.iter_mut().enumerate() {
        let got = read_events(r, 20)
            .await
            .map_err(|e| format!("subscriber on {}: {e}", c.name(i)))?;
        let got_payloads: Vec<Bytes> = got.iter().map(|(_, p)| p.clone()).collect();
        if got_payloads != want {
            return Err(format!(
                "subscriber on {} got {got_payloads:?}, expected o0..o19 in publish order",
                c.name(i)
            ));
        }
        for (n, (offset, _)) in got.iter().enumerate() {
            if let Some(offset) = offset {
                let expected = before + n as u64;
                if *offset != expected {
                    return Err(format!(
                        "subscriber on {}: event o{n} has offset {offset}, but the stream's tail was {before} on A before it, so offset {expected}",
                        c.name(i)
                    ));
                }
            }
        }
    }
    for (i, peer) in peers.iter().enumerate() {
        let t = probe_tail(ctx, peer, &stream)
            .await
            .map_err(|e| format!("{}: {e}", c.name(i)))?;
        if t != before + 20 {
            return Err(format!(
                "{} reports a tail of {t} (in_future available); A's was {before} before 20 events, so {}",
                c.name(i),
                before + 20
            ));
        }
    }
    Ok(())
}

async fn one_order(c: &ClusterCtx) -> Result<(), String> {
    let ctx = &c.ctx;
    let stream = ctx.stream("cluster-one-order");
    let peers = c.peers().await?;
    tail(ctx, &peers[0], &stream).await?;
    let mut readers = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let r = ctx
            .subscribe(peer, &stream, 2, StartPosition::Latest)
            .await
            .map_err(|e| format!("subscribing on {}: {e}", c.name(i)))?;
        readers.push(r);
    }
    let (stream, peers_ref) = (&stream, &peers);
    let publish_on = |node: usize, tag: &'static str| {
        let peer = &peers_ref[node];
        async move {
            let mut control = peer.control().await?;
            for i in 0..10 {
                publish_acked(ctx, &mut control, stream, &format!("{tag}{i}"), i).await?;
            }
            Ok::<(), String>(())
        }
    };
    let (on_a, on_b) = tokio::join!(publish_on(0, "a"), publish_on(1, "b"));
    on_a.map_err(|e| format!("publishing on {}: {e}", c.name(0)))?;
    on_b.map_err(|e| format!("publishing on {}: {e}", c.name(1)))?;
    let mut first: Option<Vec<Bytes>> = None;
    for (i, r) in readers.iter_mut().enumerate() {
        let got: Vec<Bytes> = read_events(r, 20)
            .await
            .map_err(|e| format!("subscriber on {}: {e}", c.name(i)))?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for tag in ["a", "b"] {
            let own: Vec<Bytes> = got
                .iter()
                .filter(|p| p.starts_with(tag.as_bytes()))
                .cloned()
                .collect();
            if own != payloads(tag, 0..10) {
                return Err(format!(
                    "subscriber on {}: {tag}0..{tag}9 out of their publish order: {own:?}",
                    c.name(i)
                ));
            }
        }
        match &first {
            None => first = Some(got),
            Some(order) if *order != got => {
                return Err(format!(
                    "subscribers disagree on the order: {} saw {order:?}, {} saw {got:?}",
                    c.name(0),
                    c.name(i)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn resume_elsewhere(c: &ClusterCtx) -> Result<(), String> {
    let ctx = &c.ctx;
    let stream = ctx.stream("cluster-resume");
    let (a, b) = (c.peer(0).await?, c.peer(1).await?);
    let start = tail(ctx, &a, &stream).await?;
    let mut control = a.control().await?;
    for i in 0..10 {
        publish_acked(ctx, &mut control, &stream, &format!("r{i}"), 200 + i).await?;
    }
    // Read r0..r9 on A from their first offset.
    let mut on_a = ctx
        .subscribe(&a, &stream, 3, StartPosition::Offset(start))
        .await
        .map_err(|e| format!("subscribing on {} from offset {start}: {e}", c.name(0)))?;
    let got = read_events(&mut on_a, 10)
        .await
        .map_err(|e| format!("reading on {}: {e}", c.name(0)))?;
    if got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>() != payloads("r", 0..10) {
        return Err(format!(
            "on {} from offset {start}: expected r0..r9, got {got:?}",
            c.name(0)
        ));
    }
    drop(on_a);
    // "A fails" after r3: resume on B from the offset after r3's.
    let from = start + 4;
    let mut on_b = ctx
        .subscribe(&b, &stream, 4, StartPosition::Offset(from))
        .await
        .map_err(|e| format!("resuming on {} from offset {from}: {e}", c.name(1)))?;
    for i in 10..13 {
        publish_acked(ctx, &mut control, &stream, &format!("r{i}"), 200 + i).await?;
    }
    let got = read_events(&mut on_b, 9)
        .await
        .map_err(|e| format!("after resuming on {}: {e}", c.name(1)))?;
    let want = payloads("r", 4..13);
    if got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>() != want {
        return Err(format!(
            "resumed on {} from offset {from}: expected r4..r12 (history then live), got {got:?}",
            c.name(1)
        ));
    }
    for (n, (offset, _)) in got.iter().enumerate() {
        if let Some(offset) = offset {
            if *offset != from + n as u64 {
                return Err(format!(
                    "resumed on {}: r{} has offset {offset}, expected {} (the offset it had on {})",
                    c.name(1),
                    n + 4,
                    from + n as u64,
                    c.name(0)
                ));
            }
        }
    }
    Ok(())
}

async fn cache_across(c: &ClusterCtx) -> Result<(), String> {
    let ctx = &c.ctx;
    let peers = c.peers().await?;
    let k = key(ctx, "cluster-put");
    let mut on_a = peers[0].control().await?;
    on_a.send(put(ctx, &peers[0], &k, "from-a", Some(1), None))
        .await?;
    expect_cache_ok(&mut on_a, 1).await?;
    for (i, peer) in peers.iter().enumerate().skip(1) {
        let mut s = peer.control().await?;
        s.send(get(ctx, peer, &k, Some(2))).await?;
        expect_value(&mut s, Some(2), Some("from-a"))
            .await
            .map_err(|e| format!("reading A's put on {}: {e}", c.name(i)))?;
        s.send(get(ctx, peer, &key(ctx, "cluster-miss"), Some(3)))
            .await?;
        expect_value(&mut s, Some(3), None)
            .await
            .map_err(|e| format!("a missing key on {}: {e}", c.name(i)))?;
    }
    let mut on_b = peers[1].control().await?;
    on_b.send(put(ctx, &peers[1], &k, "from-b", Some(4), None))
        .await?;
    expect_cache_ok(&mut on_b, 4).await?;
    on_a.send(get(ctx, &peers[0], &k, Some(5))).await?;
    expect_value(&mut on_a, Some(5), Some("from-b"))
        .await
        .map_err(|e| format!("reading B's overwrite on {}: {e}", c.name(0)))
}

async fn cache_ttl_everywhere(c: &ClusterCtx) -> Result<(), String> {
    let ctx = &c.ctx;
    let peers = c.peers().await?;
    let (k, z) = (key(ctx, "cluster-ttl"), key(ctx, "cluster-ttl0"));
    let mut on_a = peers[0].control().await?;
    on_a.send(put(ctx, &peers[0], &k, "brief", Some(1), Some(500)))
        .await?;
    expect_cache_ok(&mut on_a, 1).await?;
    let mut streams = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let mut s = peer.control().await?;
        s.send(get(ctx, peer, &k, Some(2))).await?;
        expect_value(&mut s, Some(2), Some("brief"))
            .await
            .map_err(|e| format!("before expiry, on {}: {e}", c.name(i)))?;
        streams.push(s);
    }
    let mut on_b = peers[1].control().await?;
    on_b.send(put(ctx, &peers[1], &z, "gone", Some(3), Some(0)))
        .await?;
    expect_cache_ok(&mut on_b, 3).await?;
    on_a.send(get(ctx, &peers[0], &z, Some(4))).await?;
    expect_value(&mut on_a, Some(4), None).await.map_err(|e| {
        format!(
            "ttl_ms 0 written on {}, read on {}: {e}",
            c.name(1),
            c.name(0)
        )
    })?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (i, (peer, s)) in peers.iter().zip(streams.iter_mut()).enumerate() {
        s.send(get(ctx, peer, &k, Some(5))).await?;
        expect_value(s, Some(5), None)
            .await
            .map_err(|e| format!("after ttl_ms 500 and 1000 ms, on {}: {e}", c.name(i)))?;
    }
    Ok(())
}
