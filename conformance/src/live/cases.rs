//! The live cases. Each returns `Err` with what the broker did wrong.

use std::time::Duration;

use bytes::Bytes;
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryPublishAck, BinaryPublishBatch, CacheGet,
    CachePut, CursorErrorReason, Frame, Message, PublishOk, StartPosition, KNOWN_FLAGS,
};

use super::{
    error_text, expect_error, publish_acked, read_events, CaseError, Ctx, LiveCase, PROBE_OFFSET,
};
use crate::case::Level;
use crate::peer::{client_config, describe, Peer, Stream};

macro_rules! case {
    ($id:literal, $level:ident, $about:literal, $f:ident) => {
        case!($id, $level, $about, $f, destructive: false)
    };
    ($id:literal, $level:ident, $about:literal, $f:ident, destructive: $d:literal) => {
        LiveCase {
            id: $id,
            level: Level::$level,
            about: $about,
            destructive: $d,
            run: |ctx| Box::pin(async move { $f(ctx).await.map_err(CaseError::from) }),
        }
    };
}

/// Every live case, in running order: destructive cases last, so a broker
/// they break (Felix stops accepting after a refused handshake) has
/// already answered every other case.
pub fn all() -> Vec<LiveCase> {
    let mut cases = vec![
        case!("broker/handshake/no_alpn", Required, "a client offering no ALPN connects", handshake_no_alpn),
        case!("broker/handshake/alpn_refused", Recommended, "a client offering ALPN is refused, and the next one connects", handshake_alpn_refused, destructive: true),
        case!("broker/auth/ok_without_client_flags", Required, "auth without client_flags is answered ok", auth_ok_plain),
        case!("broker/auth/auth_ok_with_client_flags", Required, "auth with client_flags is answered auth_ok with the server's flags", auth_ok_flags),
        case!("broker/auth/required", Required, "a request before auth gets error \"auth required\" and the stream ends", auth_required),
        case!("broker/auth/already_established", Required, "a second auth gets error \"auth already established\"", auth_twice),
        case!("broker/publish/json_acked", Required, "acked JSON publish is answered publish_ok with its request id", publish_json_acked),
        case!("broker/publish/json_ack_absent_is_acked", Required, "a JSON publish without ack is acked", publish_ack_absent),
        case!("broker/publish/json_missing_request_id", Required, "an acked JSON publish without request_id gets an error", publish_missing_request_id),
        case!("broker/publish/json_unacked_no_reply", Required, "ack none is never answered; the next acked publish's reply comes first", publish_unacked),
        case!("broker/publish/binary_acked", Required, "0x0009 gets exactly one 0x0010 ok ack with its request id", publish_binary_acked),
        case!("broker/publish/binary_unacked_uni", Required, "0x0001 on a unidirectional stream is delivered and never answered", publish_binary_uni),
        case!("broker/pubsub/subscribe", Required, "subscribe opens an event stream with event_stream_hello, then subscribed ends the control stream", pubsub_subscribe),
        case!("broker/pubsub/events_in_order", Required, "events arrive in publish order with contiguous offsets", pubsub_in_order),
        case!("broker/pubsub/fanout", Required, "every subscriber gets every event", pubsub_fanout),
        case!("broker/pubsub/same_id_other_client", Recommended, "a client leaving does not end another client's subscription that uses the same subscription id", pubsub_same_id_other_client),
        case!("broker/pubsub/offsets", Required, "a subscriber that negotiated offsets gets 0x0024 batches with base_offset", pubsub_offsets),
        case!("broker/pubsub/no_offsets_without_negotiation", Required, "a subscriber that did not advertise 0x0020 gets batches without offsets", pubsub_no_offsets),
        case!("broker/pubsub/start_earliest", Required, "start earliest replays history (0x0002) then goes live", pubsub_earliest),
        case!("broker/pubsub/start_offset", Required, "start {offset} replays from that offset; the tail itself is fine", pubsub_start_offset),
        case!("broker/pubsub/cursor_in_future", Required, "an offset past the tail gets subscribe_cursor_error in_future with available = tail", pubsub_in_future),
        case!("broker/pubsub/cursor_too_old", Required, "an offset below the replay ring gets subscribe_cursor_error too_old with available = oldest", pubsub_too_old),
        case!("broker/cache/put_get", Required, "cache_put then cache_get returns the value, request ids echoed", cache_put_get),
        case!("broker/cache/miss", Required, "a missing key is cache_value with value null", cache_miss),
        case!("broker/cache/ttl_expiry", Required, "a value expires after ttl_ms; ttl 0 expires at once", cache_ttl),
        case!("broker/cache/request_id_mux", Required, "several requests in flight on one stream are answered in order", cache_mux),
        case!("broker/cache/one_shot", Required, "put and get without request id are answered, then the stream ends", cache_one_shot),
        case!("broker/errors/unknown_flags", Required, "unknown flag bits get error \"unsupported frame flags\" and the stream goes on", errors_unknown_flags),
        case!("broker/errors/broker_only_message", Required, "a broker-to-client message from the client gets error \"unexpected message type\"", errors_broker_only),
        case!("broker/errors/bad_magic_ends_stream", Required, "bad magic ends the stream; the connection keeps serving", errors_bad_magic),
        case!("broker/errors/bad_magic_error_frame", Recommended, "bad magic is answered with an error frame before the stream ends", errors_bad_magic_frame),
        case!("broker/errors/oversize_ends_stream", Required, "a frame over the cap ends the stream; the connection keeps serving", errors_oversize),
        case!("broker/errors/oversize_error_frame", Recommended, "an oversize frame is answered with an error frame naming the length", errors_oversize_frame),
        case!("broker/errors/undecodable_error_frame", Recommended, "an undecodable payload is answered with an error frame naming the field", errors_undecodable),
    ];
    // Stable: the order above holds within each group.
    cases.sort_by_key(|c| c.destructive);
    cases
}

/// After an error case: a new stream on the same connection still works.
async fn still_serving(ctx: &Ctx, peer: &Peer, case: &str) -> Result<(), String> {
    let mut c = peer
        .control()
        .await
        .map_err(|e| format!("connection no longer serving: {e}"))?;
    publish_acked(ctx, &mut c, &ctx.stream(case), "after-error", 4242)
        .await
        .map_err(|e| format!("connection no longer serving: {e}"))
}

async fn handshake_no_alpn(ctx: &Ctx) -> Result<(), String> {
    ctx.peer().await.map(drop)
}

async fn handshake_alpn_refused(ctx: &Ctx) -> Result<(), String> {
    let config = client_config(&ctx.cfg.target.trust, Some(b"felix"))?;
    if Peer::connect_with(&ctx.cfg.target, config, ctx.cfg.timeout)
        .await
        .is_ok()
    {
        return Err(
            "the handshake offering ALPN succeeded; a Felix peer (no ALPN) would be refused by it"
                .into(),
        );
    }
    ctx.peer()
        .await
        .map(drop)
        .map_err(|e| format!("after a refused handshake, the next client cannot connect: {e}"))
}

async fn auth_ok_plain(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut s = peer.open().await?;
    s.send(peer.auth(None)).await?;
    match s.recv().await? {
        Frame::Json(Message::Ok(_)) => Ok(()),
        other => Err(format!("expected ok, got {}", describe(&other))),
    }
}

async fn auth_ok_flags(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut s = peer.open().await?;
    s.send(peer.auth(Some(KNOWN_FLAGS))).await?;
    match s.recv().await? {
        Frame::Json(Message::AuthOk(ok)) if ok.server_flags & !KNOWN_FLAGS == 0 => Ok(()),
        Frame::Json(Message::AuthOk(ok)) => Err(format!(
            "server_flags {:#06x} has unknown bits",
            ok.server_flags
        )),
        other => Err(format!("expected auth_ok, got {}", describe(&other))),
    }
}

async fn auth_required(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut s = peer.open().await?;
    s.send(ctx.publish(&ctx.stream("auth-required"), "x", Some(1), None))
        .await?;
    expect_error(&mut s.reader, "auth required").await?;
    s.reader.expect_end().await?;
    still_serving(ctx, &peer, "auth-required").await
}

async fn auth_twice(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut s = peer.control().await?;
    s.send(peer.auth(None)).await?;
    expect_error(&mut s.reader, "auth already established").await
}

async fn publish_json_acked(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    publish_acked(ctx, &mut c, &ctx.stream("json-acked"), "hello", 7).await
}

async fn publish_ack_absent(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send(ctx.publish(&ctx.stream("ack-absent"), "x", Some(8), None))
        .await?;
    match c.recv().await? {
        Frame::Json(Message::PublishOk(ok)) if ok.request_id == 8 => Ok(()),
        other => Err(format!(
            "absent ack means acked: expected publish_ok 8, got {}",
            describe(&other)
        )),
    }
}

async fn publish_missing_request_id(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send(ctx.publish(
        &ctx.stream("no-request-id"),
        "x",
        None,
        Some(AckMode::PerMessage),
    ))
    .await?;
    expect_error(&mut c.reader, "missing request_id for acked publish").await
}

async fn publish_unacked(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    let stream = ctx.stream("unacked");
    c.send(ctx.publish(&stream, "fire", None, Some(AckMode::None)))
        .await?;
    publish_acked(ctx, &mut c, &stream, "then-acked", 9)
        .await
        .map_err(|e| format!("an unacked publish must get no reply: {e}"))
}

async fn publish_binary_acked(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send(BinaryAckedPublishBatch {
        request_id: 77,
        ack_mode: AckMode::PerBatch,
        tenant_id: peer.tenant().into(),
        namespace: ctx.cfg.namespace.clone(),
        stream: ctx.stream("binary-acked"),
        payloads: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
    })
    .await?;
    match c.recv().await? {
        Frame::BinaryPublishAck(BinaryPublishAck {
            status: AckStatus::Ok,
            request_id: 77,
            ..
        }) => {}
        other => {
            return Err(format!(
                "expected one 0x0010 ok ack for request 77, got {}",
                describe(&other)
            ))
        }
    }
    // Exactly one ack: the next reply belongs to the next request.
    publish_acked(ctx, &mut c, &ctx.stream("binary-acked"), "next", 78).await
}

async fn publish_binary_uni(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("binary-uni");
    let mut events = ctx
        .subscribe(&peer, &stream, 1, StartPosition::Latest)
        .await?;
    let mut uni = peer
        .conn
        .open_uni()
        .await
        .map_err(|e| format!("open_uni: {e}"))?;
    let auth = Frame::Json(peer.auth(None))
        .to_bytes()
        .map_err(|e| e.to_string())?;
    let batch = Frame::from(BinaryPublishBatch {
        tenant_id: peer.tenant().into(),
        namespace: ctx.cfg.namespace.clone(),
        stream: stream.clone(),
        payloads: (0..3).map(|i| Bytes::from(format!("uni-{i}"))).collect(),
    })
    .to_bytes()
    .map_err(|e| e.to_string())?;
    uni.write_all(&auth).await.map_err(|e| e.to_string())?;
    uni.write_all(&batch).await.map_err(|e| e.to_string())?;
    uni.finish().map_err(|e| e.to_string())?;
    let got = read_events(&mut events, 3).await?;
    let payloads: Vec<Bytes> = got.into_iter().map(|(_, p)| p).collect();
    if payloads != [&b"uni-0"[..], b"uni-1", b"uni-2"].map(Bytes::copy_from_slice) {
        return Err(format!("expected uni-0..2, got {payloads:?}"));
    }
    Ok(())
}

async fn pubsub_subscribe(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    ctx.subscribe(&peer, &ctx.stream("subscribe"), 5, StartPosition::Latest)
        .await
        .map(drop)
}

async fn pubsub_in_order(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("order");
    let mut events = ctx
        .subscribe(&peer, &stream, 1, StartPosition::Latest)
        .await?;
    let mut c = peer.control().await?;
    for i in 0..20 {
        publish_acked(ctx, &mut c, &stream, &format!("m{i}"), i).await?;
    }
    let got = read_events(&mut events, 20).await?;
    for (i, (offset, payload)) in got.iter().enumerate() {
        if payload != &Bytes::from(format!("m{i}")) {
            return Err(format!("event {i} is {payload:?}: out of order"));
        }
        if let (Some(o), Some(first)) = (offset, got[0].0) {
            if *o != first + i as u64 {
                return Err(format!(
                    "offsets not contiguous: event {i} has offset {o}, first was {first}"
                ));
            }
        }
    }
    Ok(())
}

async fn pubsub_fanout(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("fanout");
    let mut readers = Vec::new();
    for id in 1..=3 {
        readers.push(
            ctx.subscribe(&peer, &stream, id, StartPosition::Latest)
                .await?,
        );
    }
    let other = ctx.peer().await?;
    readers.push(
        ctx.subscribe(&other, &stream, 4, StartPosition::Latest)
            .await?,
    );
    let mut c = peer.control().await?;
    for i in 0..5 {
        publish_acked(ctx, &mut c, &stream, &format!("f{i}"), i).await?;
    }
    for (n, r) in readers.iter_mut().enumerate() {
        let got = read_events(r, 5)
            .await
            .map_err(|e| format!("subscriber {}: {e}", n + 1))?;
        if got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()
            != (0..5)
                .map(|i| Bytes::from(format!("f{i}")))
                .collect::<Vec<_>>()
        {
            return Err(format!("subscriber {} got {got:?}", n + 1));
        }
    }
    Ok(())
}

async fn pubsub_same_id_other_client(ctx: &Ctx) -> Result<(), String> {
    let stream = ctx.stream("same-id");
    let staying = ctx.peer().await?;
    let leaving = ctx.peer().await?;
    // Clients choose subscription ids; both use 1 here.
    let mut stays = ctx
        .subscribe(&staying, &stream, 1, StartPosition::Latest)
        .await?;
    let _leaves = ctx
        .subscribe(&leaving, &stream, 1, StartPosition::Latest)
        .await?;
    leaving.conn.close(0u32.into(), b"leaving");
    // Give the broker time to notice the closed connection.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut c = staying.control().await?;
    publish_acked(ctx, &mut c, &stream, "after", 1).await?;
    let got = read_events(&mut stays, 1)
        .await
        .map_err(|e| format!("the staying client's subscription 1: {e}"))?;
    if got[0].1 != Bytes::from_static(b"after") {
        return Err(format!("the staying client got {got:?}"));
    }
    Ok(())
}

/// The stream's tail (the offset the next event gets), found without
/// offsets on live batches: an acked marker makes sure the stream exists,
/// then a `subscribe` from [`PROBE_OFFSET`] must be refused `in_future`
/// with `available` = the tail.
pub(super) async fn tail(ctx: &Ctx, peer: &Peer, stream: &str) -> Result<u64, String> {
    let mut c = peer.control().await?;
    publish_acked(ctx, &mut c, stream, "marker", 1).await?;
    probe_tail(ctx, peer, stream).await
}

/// The `in_future` probe alone.
pub(super) async fn probe_tail(ctx: &Ctx, peer: &Peer, stream: &str) -> Result<u64, String> {
    match cursor_error(ctx, peer, stream, PROBE_OFFSET).await {
        Ok((CursorErrorReason::InFuture, requested, available)) if requested == PROBE_OFFSET => {
            Ok(available)
        }
        Ok(other) => Err(format!(
            "finding the tail: subscribe from offset {PROBE_OFFSET} must get (in_future, requested {PROBE_OFFSET}, available = tail), got {other:?}"
        )),
        Err(e) => Err(format!(
            "finding the tail with subscribe from offset {PROBE_OFFSET}: {e}"
        )),
    }
}

/// Why an offset case is skipped for a broker that sends no offsets.
fn no_offsets(what: &str) -> CaseError {
    CaseError::Skip(format!(
        "{what}: the broker sends no base_offset on live batches, which felix-wire v1 allows (Felix does so for in-memory streams); pass --sends-offsets to require them"
    ))
}

async fn pubsub_offsets(ctx: &Ctx) -> Result<(), CaseError> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("offsets");
    let mut events = ctx
        .subscribe(&peer, &stream, 1, StartPosition::Latest)
        .await?;
    let mut c = peer.control().await?;
    publish_acked(ctx, &mut c, &stream, "x", 1).await?;
    let first = events.recv().await?;
    let tail = probe_tail(ctx, &peer, &stream).await?;
    match first {
        Frame::BinarySharedEventBatch(b) if b.base_offset == Some(tail - 1) => Ok(()),
        Frame::BinarySharedEventBatch(b) if b.base_offset.is_some() => Err(format!(
            "the event's base_offset is {:?}, but the stream's tail after it is {tail} (so it should be {})",
            b.base_offset,
            tail - 1
        )
        .into()),
        Frame::BinarySharedEventBatch(_) if !ctx.cfg.sends_offsets => {
            Err(no_offsets("a 0x0004 batch without base_offset"))
        }
        other => Err(format!(
            "expected a 0x0024 batch with base_offset (--sends-offsets), got {}",
            describe(&other)
        )
        .into()),
    }
}

async fn pubsub_no_offsets(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("no-offsets");
    let mut c = peer.open().await?;
    c.send(peer.auth(None)).await?;
    c.recv().await?;
    c.send(ctx.subscribe_msg(&stream, 1, StartPosition::Latest))
        .await?;
    c.finish()?;
    let (_, mut events) = peer.accept_events().await?;
    c.recv().await?;
    let mut p = peer.control().await?;
    publish_acked(ctx, &mut p, &stream, "x", 1).await?;
    match events.recv().await? {
        Frame::BinarySharedEventBatch(b) if b.base_offset.is_none() => Ok(()),
        other => Err(format!(
            "expected a 0x0004 batch (no offsets were negotiated), got {}",
            describe(&other)
        )),
    }
}

async fn pubsub_earliest(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("earliest");
    let tail = tail(ctx, &peer, &stream).await?;
    let mut c = peer.control().await?;
    for i in 0..3 {
        publish_acked(ctx, &mut c, &stream, &format!("h{i}"), 10 + i).await?;
    }
    let mut events = ctx
        .subscribe(&peer, &stream, 2, StartPosition::Earliest)
        .await?;
    let first = events.recv().await?;
    let Frame::BinaryEventBatch(history) = &first else {
        return Err(format!(
            "history must come as 0x0002/0x0022, got {}",
            describe(&first)
        ));
    };
    if history.subscription_id != 2 {
        return Err(format!(
            "history batch names subscription {}, expected 2",
            history.subscription_id
        ));
    }
    let mut got = vec![first.clone()];
    let mut count = history.payloads.len();
    while count < (tail + 3) as usize {
        let f = events.recv().await?;
        count += match &f {
            Frame::BinaryEventBatch(b) => b.payloads.len(),
            other => return Err(format!("history still incomplete, got {}", describe(other))),
        };
        got.push(f);
    }
    publish_acked(ctx, &mut c, &stream, "live", 20).await?;
    match events.recv().await? {
        Frame::BinarySharedEventBatch(b) if b.payloads == [Bytes::from_static(b"live")] => Ok(()),
        other => Err(format!(
            "after history, live events use 0x0004/0x0024; got {}",
            describe(&other)
        )),
    }
}

async fn pubsub_start_offset(ctx: &Ctx) -> Result<(), CaseError> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("start-offset");
    let tail = tail(ctx, &peer, &stream).await?;
    let mut c = peer.control().await?;
    for i in 0..4 {
        publish_acked(ctx, &mut c, &stream, &format!("o{i}"), 10 + i).await?;
    }
    let mut events = ctx
        .subscribe(&peer, &stream, 2, StartPosition::Offset(tail + 2))
        .await?;
    let got = read_events(&mut events, 2).await?;
    let payloads: Vec<&Bytes> = got.iter().map(|(_, p)| p).collect();
    if payloads != [&Bytes::from_static(b"o2"), &Bytes::from_static(b"o3")] {
        return Err(format!(
            "from offset {} (tail {tail} + 2): expected payloads o2, o3, got {got:?}",
            tail + 2
        )
        .into());
    }
    // Replay batches carry offsets or not, as the broker chooses; if they
    // do, they must be the right ones.
    let offsets: Vec<Option<u64>> = got.iter().map(|(o, _)| *o).collect();
    let want = [Some(tail + 2), Some(tail + 3)];
    if offsets != want && (offsets != [None, None] || ctx.cfg.sends_offsets) {
        return Err(format!(
            "from offset {}: expected offsets {want:?}, got {offsets:?}",
            tail + 2
        )
        .into());
    }
    ctx.subscribe(&peer, &stream, 3, StartPosition::Offset(tail + 4))
        .await
        .map(drop)
        .map_err(|e| format!("an offset equal to the tail must be accepted: {e}").into())
}

pub(super) async fn cursor_error(
    ctx: &Ctx,
    peer: &Peer,
    stream: &str,
    offset: u64,
) -> Result<(CursorErrorReason, u64, u64), String> {
    let mut c = peer.control().await?;
    c.send(ctx.subscribe_msg(stream, 9, StartPosition::Offset(offset)))
        .await?;
    c.finish()?;
    match c.recv().await? {
        Frame::Json(Message::SubscribeCursorError(e)) => {
            c.reader.expect_end().await?;
            Ok((e.reason, e.requested, e.available))
        }
        other => Err(format!(
            "expected subscribe_cursor_error, got {}",
            describe(&other)
        )),
    }
}

async fn pubsub_in_future(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let stream = ctx.stream("in-future");
    let before = tail(ctx, &peer, &stream).await?;
    // The probe's answer must move with the stream: three more events.
    let mut c = peer.control().await?;
    for i in 0..3 {
        publish_acked(ctx, &mut c, &stream, &format!("f{i}"), 20 + i).await?;
    }
    let tail = before + 3;
    let got = cursor_error(ctx, &peer, &stream, tail + 5).await?;
    if got != (CursorErrorReason::InFuture, tail + 5, tail) {
        return Err(format!(
            "expected (in_future, requested {}, available {tail}) after 3 events past a tail of {before}, got {got:?}",
            tail + 5
        ));
    }
    still_serving(ctx, &peer, "in-future").await
}

async fn pubsub_too_old(ctx: &Ctx) -> Result<(), CaseError> {
    let Some(capacity) = ctx.cfg.replay_capacity else {
        return Err(CaseError::Skip(
            "not applicable: only a broker with a bounded history answers too_old (a durable stream serves all of it); pass --replay-capacity N to run it".into(),
        ));
    };
    let peer = ctx.peer().await?;
    let stream = ctx.stream("too-old");
    let tail = tail(ctx, &peer, &stream).await?;
    let extra = capacity + 10;
    let mut c = peer.control().await?;
    let mut sent = 0u64;
    let mut request = 100;
    while sent < extra {
        let n = (extra - sent).min(500);
        c.send(BinaryAckedPublishBatch {
            request_id: request,
            ack_mode: AckMode::PerBatch,
            tenant_id: peer.tenant().into(),
            namespace: ctx.cfg.namespace.clone(),
            stream: stream.clone(),
            payloads: (0..n).map(|_| Bytes::from_static(b"old")).collect(),
        })
        .await?;
        match c.recv().await? {
            Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok => {}
            other => return Err(format!("filling the replay ring: {}", describe(&other)).into()),
        }
        sent += n;
        request += 1;
    }
    let new_tail = tail + extra;
    let oldest = new_tail - capacity;
    let got = cursor_error(ctx, &peer, &stream, tail).await?;
    if got != (CursorErrorReason::TooOld, tail, oldest) {
        return Err(format!(
            "expected (too_old, requested {tail}, available {oldest}) for a replay ring of {capacity} (--replay-capacity), got {got:?}"
        )
        .into());
    }
    Ok(())
}

pub(super) fn put(
    ctx: &Ctx,
    peer: &Peer,
    key: &str,
    value: &str,
    request_id: Option<u64>,
    ttl_ms: Option<u64>,
) -> Message {
    Message::from(CachePut {
        tenant_id: peer.tenant().into(),
        namespace: ctx.cfg.namespace.clone(),
        cache: ctx.cfg.cache.clone(),
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        request_id,
        ttl_ms,
    })
}

pub(super) fn get(ctx: &Ctx, peer: &Peer, key: &str, request_id: Option<u64>) -> Message {
    Message::from(CacheGet {
        tenant_id: peer.tenant().into(),
        namespace: ctx.cfg.namespace.clone(),
        cache: ctx.cfg.cache.clone(),
        key: key.into(),
        request_id,
    })
}

pub(super) async fn expect_value(
    c: &mut Stream,
    request_id: Option<u64>,
    value: Option<&str>,
) -> Result<(), String> {
    match c.recv().await? {
        Frame::Json(Message::CacheValue(v))
            if v.request_id == request_id && v.value.as_deref() == value.map(str::as_bytes) =>
        {
            Ok(())
        }
        other => Err(format!(
            "expected cache_value {{request_id: {request_id:?}, value: {value:?}}}, got {}",
            describe(&other)
        )),
    }
}

pub(super) async fn expect_cache_ok(c: &mut Stream, request_id: u64) -> Result<(), String> {
    match c.recv().await? {
        Frame::Json(Message::CacheOk(o)) if o.request_id == request_id => Ok(()),
        other => Err(format!(
            "expected cache_ok {request_id}, got {}",
            describe(&other)
        )),
    }
}

pub(super) fn key(ctx: &Ctx, name: &str) -> String {
    format!("{}-{name}", ctx.stream("key"))
}

async fn cache_put_get(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    let k = key(ctx, "a");
    c.send(put(ctx, &peer, &k, "value-a", Some(1), None))
        .await?;
    expect_cache_ok(&mut c, 1).await?;
    c.send(get(ctx, &peer, &k, Some(2))).await?;
    expect_value(&mut c, Some(2), Some("value-a")).await
}

async fn cache_miss(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send(get(ctx, &peer, &key(ctx, "never-written"), Some(3)))
        .await?;
    expect_value(&mut c, Some(3), None).await
}

async fn cache_ttl(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    let (k, z) = (key(ctx, "ttl"), key(ctx, "ttl0"));
    c.send(put(ctx, &peer, &k, "short", Some(1), Some(300)))
        .await?;
    expect_cache_ok(&mut c, 1).await?;
    c.send(put(ctx, &peer, &z, "gone", Some(2), Some(0)))
        .await?;
    expect_cache_ok(&mut c, 2).await?;
    c.send(get(ctx, &peer, &k, Some(3))).await?;
    expect_value(&mut c, Some(3), Some("short"))
        .await
        .map_err(|e| format!("before expiry: {e}"))?;
    c.send(get(ctx, &peer, &z, Some(4))).await?;
    expect_value(&mut c, Some(4), None)
        .await
        .map_err(|e| format!("ttl_ms 0 expires at once: {e}"))?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.send(get(ctx, &peer, &k, Some(5))).await?;
    expect_value(&mut c, Some(5), None)
        .await
        .map_err(|e| format!("after ttl_ms 300 and 600 ms: {e}"))
}

async fn cache_mux(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    let k = key(ctx, "mux");
    c.send(put(ctx, &peer, &k, "v", Some(11), None)).await?;
    c.send(get(ctx, &peer, &k, Some(12))).await?;
    c.send(get(ctx, &peer, &key(ctx, "mux-miss"), Some(13)))
        .await?;
    c.send(put(ctx, &peer, &k, "w", Some(14), None)).await?;
    c.send(get(ctx, &peer, &k, Some(15))).await?;
    expect_cache_ok(&mut c, 11).await?;
    expect_value(&mut c, Some(12), Some("v")).await?;
    expect_value(&mut c, Some(13), None).await?;
    expect_cache_ok(&mut c, 14).await?;
    expect_value(&mut c, Some(15), Some("w")).await
}

async fn cache_one_shot(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let k = key(ctx, "one-shot");
    let mut c = peer.control().await?;
    c.send(put(ctx, &peer, &k, "once", None, None)).await?;
    match c.recv().await? {
        Frame::Json(Message::Ok(_)) => {}
        other => {
            return Err(format!(
                "a put without request id is answered ok, got {}",
                describe(&other)
            ))
        }
    }
    c.reader
        .expect_end()
        .await
        .map_err(|e| format!("after a one-shot put the stream ends: {e}"))?;
    let mut c = peer.control().await?;
    c.send(get(ctx, &peer, &k, None)).await?;
    expect_value(&mut c, None, Some("once")).await?;
    c.reader
        .expect_end()
        .await
        .map_err(|e| format!("after a one-shot get the stream ends: {e}"))
}

async fn errors_unknown_flags(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send_raw(b"FLX1\x00\x01\x00\x40\x00\x00\x00\x02{}")
        .await?;
    expect_error(&mut c.reader, "unsupported frame flags").await?;
    publish_acked(ctx, &mut c, &ctx.stream("unknown-flags"), "after", 5)
        .await
        .map_err(|e| format!("the stream must go on: {e}"))
}

async fn errors_broker_only(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let mut c = peer.control().await?;
    c.send(Message::from(PublishOk { request_id: 1 })).await?;
    expect_error(&mut c.reader, "unexpected message type").await?;
    still_serving(ctx, &peer, "broker-only").await
}

/// Sends bytes on a fresh authenticated stream; returns what came back
/// before the stream ended (at most one frame).
async fn send_bad(peer: &Peer, bytes: &[u8]) -> Result<Option<Frame>, String> {
    let mut c = peer.control().await?;
    c.send_raw(bytes).await?;
    let reply = match c.reader.next().await {
        Ok(f) => f,
        Err(e) if e.contains("reset") || e.contains("lost") => return Ok(None),
        Err(e) => return Err(e),
    };
    if reply.is_some() {
        c.reader
            .expect_end()
            .await
            .map_err(|e| format!("after the error frame: {e}"))?;
    }
    Ok(reply)
}

const BAD_MAGIC: &[u8] = b"FLX2\x00\x01\x00\x00\x00\x00\x00\x00";
const OVERSIZE: &[u8] = b"FLX1\x00\x01\x00\x00\xff\xff\xff\xff";

async fn errors_bad_magic(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    match send_bad(&peer, BAD_MAGIC).await? {
        None | Some(Frame::Json(Message::Error(_))) => still_serving(ctx, &peer, "bad-magic").await,
        Some(other) => Err(format!("bad magic answered with {}", describe(&other))),
    }
}

async fn errors_bad_magic_frame(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    match send_bad(&peer, BAD_MAGIC).await? {
        Some(f) => error_text(&f).map(drop),
        None => Err("the stream ended silently (Felix's behaviour); an error frame naming the problem is recommended".into()),
    }
}

async fn errors_oversize(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    match send_bad(&peer, OVERSIZE).await? {
        None | Some(Frame::Json(Message::Error(_))) => still_serving(ctx, &peer, "oversize").await,
        Some(other) => Err(format!(
            "an oversize frame answered with {}",
            describe(&other)
        )),
    }
}

async fn errors_oversize_frame(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    match send_bad(&peer, OVERSIZE).await? {
        Some(f) => {
            let text = error_text(&f)?;
            if text.contains("length") {
                Ok(())
            } else {
                Err(format!("the error should name the length field: {text:?}"))
            }
        }
        None => Err(
            "the stream ended silently (Felix's behaviour); an error frame is recommended".into(),
        ),
    }
}

async fn errors_undecodable(ctx: &Ctx) -> Result<(), String> {
    let peer = ctx.peer().await?;
    let body = br#"{"type":"publish","namespace":"default"}"#;
    let mut frame = b"FLX1\x00\x01\x00\x00".to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    match send_bad(&peer, &frame).await? {
        Some(f) => {
            let text = error_text(&f)?;
            if text.contains("tenant_id") {
                still_serving(ctx, &peer, "undecodable").await
            } else {
                Err(format!(
                    "the error should name the missing field tenant_id: {text:?}"
                ))
            }
        }
        None => Err(
            "the stream ended silently (Felix's behaviour); an error frame is recommended".into(),
        ),
    }
}
