//! The client cases. Each drives the client through the driver while the
//! scripted broker answers; each returns what the client did wrong.
//! Every case is also subject to the wire checks of [`super::broker`].

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use felix_wire::{
    AckMode, AckStatus, BinaryEventBatch, BinaryPublishAck, BinarySharedEventBatch, CacheOk,
    CacheValue, CursorErrorReason, ErrorMessage, Event, EventBatch, Frame, Message, PublishError,
    PublishOk, StartPosition, SubscribeCursorError, Subscribed, KNOWN_FLAGS,
};
use serde_json::{json, Value};

use super::broker::{AuthReply, EventOut, Role, ScriptedBroker, StreamRef};
use super::driver::{error_of, expect_error, ok};
use super::{ClientCase, Session};
use crate::case::Level;
use crate::live::CaseError;
use crate::peer::describe;

type R<T = ()> = Result<T, CaseError>;

macro_rules! case {
    ($id:literal, $level:ident, $auth:expr, $about:literal, $f:ident) => {
        ClientCase {
            id: $id,
            level: Level::$level,
            about: $about,
            auth: || $auth,
            run: |s| Box::pin($f(s)),
        }
    };
}

fn all_flags() -> AuthReply {
    AuthReply::AuthOk(KNOWN_FLAGS)
}

/// Every client case, in running order.
pub fn all() -> Vec<ClientCase> {
    vec![
        case!("client/auth/first_frame_on_every_stream", Required, all_flags(), "every stream the client opens (acked and unacked publish, cache, subscribe) starts with auth carrying the given tenant and token", auth_every_stream),
        case!("client/auth/refused_is_surfaced", Required, AuthReply::Refuse("auth failed".into()), "error \"auth failed\" in reply to auth fails connect with the broker's text", auth_refused),
        case!("client/publish/binary_acked_when_advertised", Required, all_flags(), "an acked publish uses 0x0009 (request id, ack mode) when 0x0001|0x0008 are advertised; the 0x0010 ok ack completes it", publish_binary_acked),
        case!("client/publish/binary_unacked_on_uni_stream", Required, all_flags(), "an unacked publish is 0x0001 on a unidirectional stream, and nothing is awaited", publish_binary_unacked),
        case!("client/publish/json_acked_without_server_flags", Required, AuthReply::AuthOk(0), "with server_flags 0 an acked publish falls back to JSON publish with request_id and ack", publish_json_acked),
        case!("client/publish/json_unacked_without_server_flags", Required, AuthReply::AuthOk(0), "with server_flags 0 an unacked publish is JSON publish with ack \"none\" on a unidirectional stream", publish_json_unacked),
        case!("client/publish/plain_ok_means_original_flags", Required, AuthReply::PlainOk, "after a plain ok (flags 0x0007) an acked publish is JSON: 0x0008 was never advertised", publish_plain_ok),
        case!("client/publish/batch_is_one_frame_one_ack", Required, all_flags(), "a batch of 3 per_batch is one 0x0009 frame with 3 payloads and completes on its one ack", publish_batch),
        case!("client/publish/acks_matched_in_fifo_order", Required, all_flags(), "3 acked publishes in flight on one stream: replies in request order reach the right callers (the middle one refused)", publish_fifo),
        case!("client/publish/error_ack_surfaces", Required, all_flags(), "a 0x0010 error ack fails the publish with the broker's text", publish_error_ack),
        case!("client/publish/publish_error_surfaces", Required, AuthReply::AuthOk(0), "publish_error fails the JSON publish with the broker's text", publish_error_json),
        case!("client/publish/error_frame_surfaces", Required, all_flags(), "an error frame in reply to an acked publish fails it with the broker's text", publish_error_frame),
        case!("client/cache/put_without_ttl_writes_null", Required, all_flags(), "cache_put without a TTL writes \"ttl_ms\":null last, with a request id; cache_ok completes it", cache_put_null),
        case!("client/cache/put_with_ttl", Required, all_flags(), "cache_put with a TTL of 1500 ms writes \"ttl_ms\":1500", cache_put_ttl),
        case!("client/cache/get_hit_and_miss", Required, all_flags(), "cache_value with a value is a hit, with value null a miss", cache_get),
        case!("client/cache/unanswered_request_times_out", Required, all_flags(), "a cache_get the broker never answers fails cleanly with a timeout near the request timeout", cache_timeout),
        case!("client/subscribe/wire_form_and_finish", Required, all_flags(), "subscribe (latest) on its own authenticated stream with a subscription id, then the client finishes its send side", subscribe_wire),
        case!("client/subscribe/start_positions", Required, all_flags(), "earliest and {offset: 7} are sent as given", subscribe_starts),
        case!("client/subscribe/event_stream_after_subscribed", Required, all_flags(), "the event stream may arrive after subscribed: the client waits for it", subscribe_hello_late),
        case!("client/subscribe/routed_by_event_stream_hello", Required, all_flags(), "event streams are routed by the id in event_stream_hello, whatever order they open in", subscribe_routing),
        case!("client/subscribe/cursor_too_old_surfaces", Required, all_flags(), "subscribe_cursor_error too_old fails subscribe with requested and available", subscribe_too_old),
        case!("client/subscribe/cursor_in_future_surfaces", Required, all_flags(), "subscribe_cursor_error in_future fails subscribe with requested and available", subscribe_in_future),
        case!("client/subscribe/error_surfaces", Required, all_flags(), "an error frame in reply to subscribe fails it with the broker's text", subscribe_error),
        case!("client/events/shared_batch_with_offsets", Required, all_flags(), "a 0x0024 batch yields its events with base_offset + i", events_with_offsets),
        case!("client/events/shared_batch_without_offsets", Required, all_flags(), "a 0x0004 batch (no offsets, as Felix's in-memory streams) yields events without offsets", events_without_offsets),
        case!("client/events/replay_then_live", Required, all_flags(), "0x0022 replay batches then 0x0024 live ones yield one ordered sequence", events_replay_then_live),
        case!("client/events/gap_detected", Required, all_flags(), "offsets jumping from 1 to 5 yield a gap (expected 2, got 5) before event 5", events_gap),
        case!("client/events/json_event_and_event_batch", Recommended, all_flags(), "JSON event and event_batch on an event stream yield events with offsets", events_json),
        case!("client/robustness/oversize_event_frame", Required, all_flags(), "an event frame announcing more than the client's cap is reported as an error, and the client keeps working", robust_oversize),
        case!("client/robustness/malformed_event_batch", Required, all_flags(), "a 0x0004 batch whose count exceeds its bytes is reported as an error, and the client keeps working", robust_malformed),
        case!("client/robustness/bad_magic_reply", Required, all_flags(), "a reply with bad magic fails the request without a crash; the next request works", robust_bad_magic),
        case!("client/reconnect/after_connection_closed", Required, all_flags(), "after the broker closes the connection, the next publish reconnects and authenticates anew", reconnect_publish),
        case!("client/reconnect/resume_from_last_offset", Required, all_flags(), "a subscription whose connection the broker closes resumes from the last offset + 1, without gap or duplicate", reconnect_resume),
    ]
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn fail<T>(s: impl Into<String>) -> R<T> {
    Err(CaseError::Fail(s.into()))
}

fn publish_op(stream: &str, payload: &str, ack: &str) -> Value {
    json!({"op": "publish", "namespace": "default", "stream": stream, "payload": b64(payload), "ack": ack})
}

/// Reads the next request, which must be on a stream of `role`.
async fn request_on(b: &mut ScriptedBroker, role: Role) -> R<(StreamRef, Frame, Bytes)> {
    let (s, f, raw) = b.next_request().await?;
    if s.role != role {
        return fail(format!(
            "{} arrived on {s}, expected a {} stream",
            describe(&f),
            match role {
                Role::Control => "bidirectional",
                Role::PublishOnly => "unidirectional",
            }
        ));
    }
    Ok((s, f, raw))
}

/// The ok reply to an acked publish or cache request.
fn ok_reply(f: &Frame) -> R<Frame> {
    Ok(match f {
        Frame::BinaryAckedPublishBatch(p) => Frame::BinaryPublishAck(BinaryPublishAck {
            status: AckStatus::Ok,
            request_id: p.request_id,
            message: String::new(),
        }),
        Frame::Json(Message::Publish(p)) => match p.request_id {
            Some(id) => Message::from(PublishOk { request_id: id }).into(),
            None => {
                return fail(format!(
                    "an acked JSON publish without request_id: {}",
                    describe(f)
                ))
            }
        },
        Frame::Json(Message::PublishBatch(p)) => match p.request_id {
            Some(id) => Message::from(PublishOk { request_id: id }).into(),
            None => {
                return fail(format!(
                    "an acked JSON publish_batch without request_id: {}",
                    describe(f)
                ))
            }
        },
        Frame::Json(Message::CachePut(p)) => match p.request_id {
            Some(id) => Message::from(CacheOk { request_id: id }).into(),
            None => {
                return fail(
                    "cache_put without request_id: the broker would end the stream after ok",
                )
            }
        },
        other => {
            return fail(format!(
                "expected an acked publish or cache_put, got {}",
                describe(other)
            ))
        }
    })
}

/// Serves the next acked publish or cache_put with an ok reply.
async fn serve_ok(b: &mut ScriptedBroker) -> R<Frame> {
    let (s, f, _) = request_on(b, Role::Control).await?;
    b.reply(&s, ok_reply(&f)?).await?;
    Ok(f)
}

/// Serves a subscribe: checks it, waits for the client to finish its send
/// side, opens the event stream (before `subscribed`, or 100 ms after it
/// when `hello_late`), replies `subscribed` and ends the control stream.
async fn serve_subscribe(
    b: &mut ScriptedBroker,
    hello_late: bool,
) -> R<(felix_wire::Subscribe, EventOut, usize)> {
    let (s, f, _) = request_on(b, Role::Control).await?;
    let Frame::Json(Message::Subscribe(sub)) = f else {
        return fail(format!("expected subscribe, got {}", describe(&f)));
    };
    b.expect_end(&s).await?;
    let id = sub.subscription_id.unwrap_or(1);
    let events = if hello_late {
        b.reply(
            &s,
            Message::from(Subscribed {
                subscription_id: id,
            }),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.open_events(s.conn, id).await?
    } else {
        let e = b.open_events(s.conn, id).await?;
        b.reply(
            &s,
            Message::from(Subscribed {
                subscription_id: id,
            }),
        )
        .await?;
        e
    };
    b.finish(&s).await?;
    Ok((sub, events, s.conn))
}

/// Refuses the next subscribe with `reply`, then ends the stream.
async fn refuse_subscribe(b: &mut ScriptedBroker, reply: Message) -> R {
    let (s, f, _) = request_on(b, Role::Control).await?;
    if !matches!(f, Frame::Json(Message::Subscribe(_))) {
        return fail(format!("expected subscribe, got {}", describe(&f)));
    }
    b.reply(&s, reply).await?;
    Ok(b.finish(&s).await?)
}

/// Runs a driver request and the broker's side of it together. If the
/// client answers with an error while the broker still waits for it (a
/// request that never came), that error is the failure, at once.
async fn both<T>(
    call: impl std::future::Future<Output = R<Value>>,
    broker: impl std::future::Future<Output = R<T>>,
) -> R<(Value, T)> {
    tokio::pin!(call);
    tokio::pin!(broker);
    tokio::select! {
        a = &mut call => {
            let a = a?;
            if a["result"] != "error" {
                return Ok((a, broker.await?));
            }
            match tokio::time::timeout(Duration::from_millis(300), &mut broker).await {
                Ok(t) => Ok((a, t?)),
                Err(_) => fail(format!(
                    "the client reported {} where the broker still waited for it to act",
                    error_of(&a)
                )),
            }
        }
        t = &mut broker => {
            let t = t?;
            Ok((call.await?, t))
        }
    }
}

fn subscribe_op(sub: &str, start: Value, resume: bool) -> Value {
    json!({"op": "subscribe", "sub": sub, "namespace": "default", "stream": "orders", "start": start, "resume": resume})
}

/// Asks for the next item of subscription `sub`.
async fn next(s: &mut Session, sub: &str) -> R<Value> {
    let wait = s.timeout;
    let answer =
        s.d.call_within(
            json!({"op": "next", "sub": sub, "timeoutMs": wait.as_millis() as u64}),
            wait,
        )
        .await?;
    Ok(answer)
}

/// Checks that `answer` is the event (offset, payload).
fn is_event(answer: &Value, what: &str, offset: Option<u64>, payload: &str) -> R {
    let item = ok(answer, what)?["item"].clone();
    let want = json!({"kind": "event", "offset": offset, "payload": b64(payload)});
    if item == want {
        Ok(())
    } else {
        fail(format!("{what}: expected {want}, got {item}"))
    }
}

async fn expect_events(s: &mut Session, sub: &str, want: &[(Option<u64>, &str)]) -> R {
    for (i, (offset, payload)) in want.iter().enumerate() {
        let a = next(s, sub).await?;
        is_event(
            &a,
            &format!("event {i} of subscription {sub}"),
            *offset,
            payload,
        )?;
    }
    Ok(())
}

/// Subscribes `sub` from latest against `serve_subscribe`.
async fn subscribed(s: &mut Session, sub: &str) -> R<(felix_wire::Subscribe, EventOut, usize)> {
    let (answer, served) = both(
        s.d.call(subscribe_op(sub, json!("latest"), false)),
        serve_subscribe(&mut s.b, false),
    )
    .await?;
    ok(&answer, "subscribe")?;
    Ok(served)
}

// ---------------------------------------------------------------- auth

async fn auth_every_stream(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, _) = both(
        s.d.call(publish_op("orders", "acked", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, "acked publish")?;
    let a = s.d.call(publish_op("orders", "fire", "none")).await?;
    ok(&a, "unacked publish")?;
    request_on(&mut s.b, Role::PublishOnly).await?;
    let put = json!({"op": "cache_put", "namespace": "default", "cache": "c", "key": "k", "value": b64("v"), "ttlMs": null});
    let (a, _) = both(s.d.call(put), serve_ok(&mut s.b)).await?;
    ok(&a, "cache_put")?;
    subscribed(s, "a").await?;
    let streams = s.b.streams();
    let uni = streams
        .iter()
        .filter(|r| r.role == Role::PublishOnly)
        .count();
    let bidi = streams.len() - uni;
    if uni < 1 || bidi < 2 || s.b.connections() < 1 {
        return fail(format!(
            "expected at least 1 unidirectional and 2 bidirectional streams, saw {uni} and {bidi}: {streams:?}"
        ));
    }
    Ok(())
}

async fn auth_refused(s: &mut Session) -> R {
    let request = s.connect_request(json!({}))?;
    let a = s.d.call(request).await?;
    expect_error(
        &a,
        "connect against a broker refusing auth",
        "auth",
        "auth failed",
    )
}

// ---------------------------------------------------------------- publish

async fn publish_binary_acked(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, f) = both(
        s.d.call(publish_op("orders", "hello", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, "acked publish")?;
    match f {
        Frame::BinaryAckedPublishBatch(p)
            if p.ack_mode == AckMode::PerMessage
                && p.payloads == [Bytes::from_static(b"hello")]
                && (
                    p.tenant_id.as_str(),
                    p.namespace.as_str(),
                    p.stream.as_str(),
                ) == ("t1", "default", "orders") =>
        {
            Ok(())
        }
        other => fail(format!(
            "expected 0x0009 {{ack_mode per_message, t1/default/orders, [\"hello\"]}}, got {}",
            describe(&other)
        )),
    }
}

async fn publish_binary_unacked(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let a = s.d.call(publish_op("orders", "fire", "none")).await?;
    ok(&a, "unacked publish")?;
    let (_, f, _) = request_on(&mut s.b, Role::PublishOnly).await?;
    match f {
        Frame::BinaryPublishBatch(p) if p.payloads == [Bytes::from_static(b"fire")] => Ok(()),
        other => fail(format!(
            "expected 0x0001 with [\"fire\"], got {}",
            describe(&other)
        )),
    }
}

async fn publish_json_acked(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, f) = both(
        s.d.call(publish_op("orders", "hello", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, "acked publish")?;
    match f {
        Frame::Json(Message::Publish(p)) if p.request_id.is_some() && p.ack == Some(AckMode::PerMessage) => Ok(()),
        other => fail(format!(
            "the broker advertised no flags: expected JSON publish with request_id and ack per_message, got {}",
            describe(&other)
        )),
    }
}

async fn publish_json_unacked(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let a = s.d.call(publish_op("orders", "fire", "none")).await?;
    ok(&a, "unacked publish")?;
    let (_, f, _) = request_on(&mut s.b, Role::PublishOnly).await?;
    match f {
        Frame::Json(Message::Publish(p)) if p.ack == Some(AckMode::None) && p.payload == "fire" => {
            Ok(())
        }
        other => fail(format!(
            "the broker advertised no flags: expected JSON publish with ack none, got {}",
            describe(&other)
        )),
    }
}

async fn publish_plain_ok(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, f) = both(
        s.d.call(publish_op("orders", "hello", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, "acked publish")?;
    match f {
        Frame::Json(Message::Publish(p)) if p.request_id.is_some() => Ok(()),
        other => fail(format!(
            "after ok (0x0007, no 0x0008) expected JSON publish with request_id, got {}",
            describe(&other)
        )),
    }
}

async fn publish_batch(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let op = json!({"op": "publish_batch", "namespace": "default", "stream": "orders",
        "payloads": [b64("b0"), b64("b1"), b64("b2")], "ack": "per_batch"});
    let (a, f) = both(s.d.call(op), serve_ok(&mut s.b)).await?;
    ok(&a, "publish_batch")?;
    match &f {
        Frame::BinaryAckedPublishBatch(p)
            if p.ack_mode == AckMode::PerBatch
                && p.payloads.len() == 3
                && p.payloads[2] == "b2" => {}
        other => {
            return fail(format!(
                "expected one 0x0009 per_batch frame with b0, b1, b2, got {}",
                describe(other)
            ))
        }
    }
    s.b.expect_no_request(Duration::from_millis(200)).await?;
    Ok(())
}

async fn publish_fifo(s: &mut Session) -> R {
    s.connect(json!({"publishStreams": 1})).await?;
    let op = json!({"op": "publish_concurrent", "namespace": "default", "stream": "orders",
        "payloads": [b64("a0"), b64("a1"), b64("a2")], "ack": "per_message"});
    let broker = async {
        let mut got: Vec<(StreamRef, Frame)> = Vec::new();
        while got.len() < 3 {
            let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
            got.push((st, f));
        }
        // Replies in request order on each stream; the publish of a1 is refused.
        for (st, f) in &got {
            let Frame::BinaryAckedPublishBatch(p) = f else {
                return fail(format!("expected 0x0009, got {}", describe(f)));
            };
            let status = if p.payloads.first().map(|b| &b[..]) == Some(b"a1") {
                AckStatus::Error
            } else {
                AckStatus::Ok
            };
            let message = if status == AckStatus::Error {
                "denied a1".to_string()
            } else {
                String::new()
            };
            s.b.reply(
                st,
                BinaryPublishAck {
                    status,
                    request_id: p.request_id,
                    message,
                },
            )
            .await?;
        }
        let streams: std::collections::BTreeSet<u64> = got.iter().map(|(st, _)| st.id).collect();
        Ok::<_, CaseError>(streams.len())
    };
    let (a, streams) = both(s.d.call(op), broker).await?;
    let results = ok(&a, "publish_concurrent")?["results"].clone();
    let results = results.as_array().cloned().unwrap_or_default();
    if results.len() != 3 {
        return fail(format!("expected 3 results, got {}", Value::from(results)));
    }
    ok(&results[0], "publish of a0 (acked ok)")?;
    expect_error(
        &results[1],
        "publish of a1 (refused by a 0x0010 error ack)",
        "broker",
        "denied a1",
    )?;
    ok(&results[2], "publish of a2 (acked ok)")?;
    tracing::debug!(streams, "fifo publishes spread over streams");
    Ok(())
}

async fn publish_refused(s: &mut Session, reply: fn(&Frame) -> R<Frame>, text: &str) -> R {
    s.connect(json!({})).await?;
    let broker = async {
        let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
        s.b.reply(&st, reply(&f)?).await?;
        Ok::<_, CaseError>(())
    };
    let (a, ()) = both(s.d.call(publish_op("orders", "x", "per_message")), broker).await?;
    expect_error(&a, "refused publish", "broker", text)
}

async fn publish_error_ack(s: &mut Session) -> R {
    publish_refused(
        s,
        |f| match f {
            Frame::BinaryAckedPublishBatch(p) => Ok(Frame::BinaryPublishAck(BinaryPublishAck {
                status: AckStatus::Error,
                request_id: p.request_id,
                message: "stream not found: t1/default/orders".into(),
            })),
            other => fail(format!("expected 0x0009, got {}", describe(other))),
        },
        "stream not found: t1/default/orders",
    )
    .await
}

async fn publish_error_json(s: &mut Session) -> R {
    publish_refused(
        s,
        |f| match f {
            Frame::Json(Message::Publish(p)) => Ok(Message::from(PublishError {
                request_id: p.request_id.unwrap_or(0),
                message: "quota exceeded".into(),
            })
            .into()),
            other => fail(format!("expected JSON publish, got {}", describe(other))),
        },
        "quota exceeded",
    )
    .await
}

async fn publish_error_frame(s: &mut Session) -> R {
    publish_refused(
        s,
        |_| {
            Ok(Message::from(ErrorMessage {
                message: "permission denied".into(),
            })
            .into())
        },
        "permission denied",
    )
    .await
}

// ---------------------------------------------------------------- cache

async fn cache_put_with(s: &mut Session, ttl: Value, tail: &str) -> R {
    s.connect(json!({})).await?;
    let put = json!({"op": "cache_put", "namespace": "default", "cache": "c", "key": "k", "value": b64("cached"), "ttlMs": ttl});
    let broker = async {
        let (st, f, raw) = request_on(&mut s.b, Role::Control).await?;
        match &f {
            Frame::Json(Message::CachePut(p)) if p.request_id.is_some() && p.value == "cached" => {}
            other => {
                return fail(format!(
                    "expected cache_put with a request_id and value \"cached\", got {}",
                    describe(other)
                ))
            }
        }
        let reply = ok_reply(&f)?;
        s.b.reply(&st, reply).await?;
        Ok::<_, CaseError>(raw)
    };
    let (a, raw) = both(s.d.call(put), broker).await?;
    ok(&a, "cache_put")?;
    let text = String::from_utf8_lossy(&raw[12.min(raw.len())..]).into_owned();
    if !text.ends_with(tail) {
        return fail(format!("cache_put must end {tail}, got {text}"));
    }
    Ok(())
}

async fn cache_put_null(s: &mut Session) -> R {
    cache_put_with(s, Value::Null, r#","ttl_ms":null}"#).await
}

async fn cache_put_ttl(s: &mut Session) -> R {
    cache_put_with(s, json!(1500), r#","ttl_ms":1500}"#).await
}

async fn cache_get(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    for (key, value) in [("hit", Some("v1")), ("miss", None)] {
        let op = json!({"op": "cache_get", "namespace": "default", "cache": "c", "key": key});
        let broker = async {
            let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
            let Frame::Json(Message::CacheGet(g)) = f else {
                return fail(format!("expected cache_get, got {}", describe(&f)));
            };
            if g.request_id.is_none() {
                return fail(
                    "cache_get without request_id: the broker would end the stream after one reply",
                );
            }
            s.b.reply(
                &st,
                Message::from(CacheValue {
                    tenant_id: g.tenant_id,
                    namespace: g.namespace,
                    cache: g.cache,
                    key: g.key,
                    value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    request_id: g.request_id,
                }),
            )
            .await?;
            Ok(())
        };
        let (a, ()) = both(s.d.call(op), broker).await?;
        let got = ok(&a, &format!("cache_get {key}"))?["value"].clone();
        let want = value.map_or(Value::Null, |v| Value::from(b64(v)));
        if got != want {
            return fail(format!("cache_get {key}: expected value {want}, got {got}"));
        }
    }
    Ok(())
}

async fn cache_timeout(s: &mut Session) -> R {
    let request_timeout = Duration::from_millis(500);
    s.connect(json!({"requestTimeoutMs": request_timeout.as_millis() as u64}))
        .await?;
    let op = json!({"op": "cache_get", "namespace": "default", "cache": "c", "key": "never"});
    let t0 = Instant::now();
    let (a, _) = both(s.d.call(op), request_on(&mut s.b, Role::Control)).await?;
    let took = t0.elapsed();
    expect_error(&a, "an unanswered cache_get", "timeout", "")?;
    if took < request_timeout.mul_f32(0.8) || took > request_timeout * 4 {
        return fail(format!(
            "the timeout came after {} ms, for a request timeout of {} ms",
            took.as_millis(),
            request_timeout.as_millis()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- subscribe

async fn subscribe_wire(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (sub, _, _) = subscribed(s, "a").await?;
    if sub.subscription_id.is_none() {
        return fail("subscribe carries no subscription_id: the client cannot route event streams by event_stream_hello without one");
    }
    match sub.start {
        Some(StartPosition::Latest) | None => {}
        other => return fail(format!("start latest was sent as {other:?}")),
    }
    if (
        sub.tenant_id.as_str(),
        sub.namespace.as_str(),
        sub.stream.as_str(),
    ) != ("t1", "default", "orders")
    {
        return fail(format!(
            "subscribe names {}/{}/{}, expected t1/default/orders",
            sub.tenant_id, sub.namespace, sub.stream
        ));
    }
    Ok(())
}

async fn subscribe_starts(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    for (sub, start, want) in [
        ("a", json!("earliest"), StartPosition::Earliest),
        ("b", json!({"offset": 7}), StartPosition::Offset(7)),
    ] {
        let (a, (got, _, _)) = both(
            s.d.call(subscribe_op(sub, start.clone(), false)),
            serve_subscribe(&mut s.b, false),
        )
        .await?;
        ok(&a, &format!("subscribe from {start}"))?;
        if got.start != Some(want) {
            return fail(format!("start {start} was sent as {:?}", got.start));
        }
    }
    Ok(())
}

async fn subscribe_hello_late(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, (_, mut events, _)) = both(
        s.d.call(subscribe_op("a", json!("latest"), false)),
        serve_subscribe(&mut s.b, true),
    )
    .await?;
    ok(&a, "subscribe with the event stream after subscribed")?;
    events
        .send(BinarySharedEventBatch {
            base_offset: Some(0),
            payloads: vec![Bytes::from_static(b"late")],
        })
        .await?;
    expect_events(s, "a", &[(Some(0), "late")]).await
}

async fn subscribe_routing(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    // Before a's own stream, one for a subscription nobody made.
    let broker = async {
        let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
        let Frame::Json(Message::Subscribe(sub)) = f else {
            return fail(format!("expected subscribe, got {}", describe(&f)));
        };
        let id = sub.subscription_id.unwrap_or(1);
        let mut stray = s.b.open_events(st.conn, id + 1000).await?;
        stray
            .send(BinarySharedEventBatch {
                base_offset: Some(0),
                payloads: vec![Bytes::from_static(b"stray")],
            })
            .await?;
        let e = s.b.open_events(st.conn, id).await?;
        s.b.reply(
            &st,
            Message::from(Subscribed {
                subscription_id: id,
            }),
        )
        .await?;
        s.b.finish(&st).await?;
        Ok::<_, CaseError>((e, id))
    };
    let (a, (mut ea, ida)) =
        both(s.d.call(subscribe_op("a", json!("latest"), false)), broker).await?;
    ok(&a, "subscribe a")?;
    let (_, mut eb, _) = subscribed(s, "b").await?;
    eb.send(BinarySharedEventBatch {
        base_offset: Some(10),
        payloads: vec![Bytes::from_static(b"for-b")],
    })
    .await?;
    ea.send(BinarySharedEventBatch {
        base_offset: Some(20),
        payloads: vec![Bytes::from_static(b"for-a")],
    })
    .await?;
    expect_events(s, "a", &[(Some(20), "for-a")])
        .await
        .map_err(|e| match e {
            CaseError::Fail(m) => CaseError::Fail(format!(
                "{m} (subscription a is {ida}; a stray stream for {} opened first)",
                ida + 1000
            )),
            other => other,
        })?;
    expect_events(s, "b", &[(Some(10), "for-b")]).await
}

async fn subscribe_refused(
    s: &mut Session,
    reply: Message,
    kind: &str,
    text: &str,
    numbers: Option<(u64, u64)>,
) -> R {
    s.connect(json!({})).await?;
    let (a, ()) = both(
        s.d.call(subscribe_op("a", json!({"offset": 3}), false)),
        refuse_subscribe(&mut s.b, reply),
    )
    .await?;
    expect_error(&a, "refused subscribe", kind, text)?;
    if let Some((requested, available)) = numbers {
        let e = &a["error"];
        if e["requested"] != requested || e["available"] != available {
            return fail(format!(
                "the cursor error must carry requested {requested} and available {available}, the client reported {}",
                error_of(&a)
            ));
        }
    }
    Ok(())
}

async fn subscribe_too_old(s: &mut Session) -> R {
    let reply = Message::from(SubscribeCursorError {
        reason: CursorErrorReason::TooOld,
        requested: 3,
        available: 10,
    });
    subscribe_refused(s, reply, "cursor_too_old", "", Some((3, 10))).await
}

async fn subscribe_in_future(s: &mut Session) -> R {
    let reply = Message::from(SubscribeCursorError {
        reason: CursorErrorReason::InFuture,
        requested: 3,
        available: 2,
    });
    subscribe_refused(s, reply, "cursor_in_future", "", Some((3, 2))).await
}

async fn subscribe_error(s: &mut Session) -> R {
    let reply = Message::from(ErrorMessage {
        message: "stream not found: t1/default/orders".into(),
    });
    subscribe_refused(
        s,
        reply,
        "broker",
        "stream not found: t1/default/orders",
        None,
    )
    .await
}

// ---------------------------------------------------------------- events

fn payloads(p: &[&'static str]) -> Vec<Bytes> {
    p.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
}

async fn events_with_offsets(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (_, mut e, _) = subscribed(s, "a").await?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(10),
        payloads: payloads(&["a", "b", "c"]),
    })
    .await?;
    expect_events(s, "a", &[(Some(10), "a"), (Some(11), "b"), (Some(12), "c")]).await
}

async fn events_without_offsets(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (_, mut e, _) = subscribed(s, "a").await?;
    e.send(BinarySharedEventBatch {
        base_offset: None,
        payloads: payloads(&["a", "b"]),
    })
    .await?;
    e.send(BinarySharedEventBatch {
        base_offset: None,
        payloads: payloads(&["c"]),
    })
    .await?;
    expect_events(s, "a", &[(None, "a"), (None, "b"), (None, "c")]).await
}

async fn events_replay_then_live(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (sub, mut e, _) = subscribed(s, "a").await?;
    let id = sub.subscription_id.unwrap_or(1);
    e.send(BinaryEventBatch {
        subscription_id: id,
        base_offset: Some(0),
        payloads: payloads(&["h0", "h1"]),
    })
    .await?;
    e.send(BinaryEventBatch {
        subscription_id: id,
        base_offset: Some(2),
        payloads: payloads(&["h2"]),
    })
    .await?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(3),
        payloads: payloads(&["l3"]),
    })
    .await?;
    expect_events(
        s,
        "a",
        &[
            (Some(0), "h0"),
            (Some(1), "h1"),
            (Some(2), "h2"),
            (Some(3), "l3"),
        ],
    )
    .await
}

async fn events_gap(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (_, mut e, _) = subscribed(s, "a").await?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(0),
        payloads: payloads(&["e0", "e1"]),
    })
    .await?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(5),
        payloads: payloads(&["e5"]),
    })
    .await?;
    expect_events(s, "a", &[(Some(0), "e0"), (Some(1), "e1")]).await?;
    let a = next(s, "a").await?;
    let item = ok(&a, "the item after offset 1")?["item"].clone();
    let want = json!({"kind": "gap", "expected": 2, "got": 5});
    if item != want {
        return fail(format!(
            "offsets jumped from 1 to 5: expected {want}, got {item}"
        ));
    }
    expect_events(s, "a", &[(Some(5), "e5")]).await
}

async fn events_json(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (_, mut e, _) = subscribed(s, "a").await?;
    e.send(Message::from(Event {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payload: Bytes::from_static(b"j5"),
        offset: Some(5),
    }))
    .await?;
    e.send(Message::from(EventBatch {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "orders".into(),
        payloads: payloads(&["j6", "j7"]),
        base_offset: Some(6),
    }))
    .await?;
    expect_events(s, "a", &[(Some(5), "j5"), (Some(6), "j6"), (Some(7), "j7")]).await
}

// ---------------------------------------------------------------- robustness

/// After a broken frame: the subscription reports an error (or ends), and
/// the client still serves a publish.
async fn after_bad_event_frame(s: &mut Session, bytes: &[u8], what: &str) -> R {
    s.connect(json!({})).await?;
    let (_, mut e, _) = subscribed(s, "a").await?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(0),
        payloads: payloads(&["ok"]),
    })
    .await?;
    e.send_raw(bytes).await?;
    expect_events(s, "a", &[(Some(0), "ok")]).await?;
    let a = next(s, "a").await?;
    if a["result"] != "error" {
        return fail(format!(
            "{what}: the subscription must report an error, the client answered {a}"
        ));
    }
    let (a, _) = both(
        s.d.call(publish_op("orders", "still-alive", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, &format!("a publish after {what}"))?;
    Ok(())
}

async fn robust_oversize(s: &mut Session) -> R {
    after_bad_event_frame(
        s,
        b"FLX1\x00\x01\x00\x04\xff\xff\xff\xf0",
        "an event frame announcing 4294967280 bytes",
    )
    .await
}

async fn robust_malformed(s: &mut Session) -> R {
    // 0x0004 without offsets: count 1000, then 4 bytes.
    let mut frame = b"FLX1\x00\x01\x00\x04\x00\x00\x00\x08".to_vec();
    frame.extend_from_slice(&1000u32.to_be_bytes());
    frame.extend_from_slice(b"abcd");
    after_bad_event_frame(s, &frame, "a 0x0004 batch with count 1000 in 8 bytes").await
}

async fn robust_bad_magic(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let op = json!({"op": "cache_get", "namespace": "default", "cache": "c", "key": "k"});
    let broker = async {
        let (st, _, _) = request_on(&mut s.b, Role::Control).await?;
        s.b.reply_raw(&st, b"FLX2\x00\x01\x00\x00\x00\x00\x00\x00")
            .await?;
        Ok::<_, CaseError>(())
    };
    let (a, ()) = both(s.d.call(op.clone()), broker).await?;
    if a["result"] != "error" {
        return fail(format!(
            "a reply with bad magic must fail the request, the client answered {a}"
        ));
    }
    let broker = async {
        let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
        let Frame::Json(Message::CacheGet(g)) = f else {
            return fail(format!("expected cache_get, got {}", describe(&f)));
        };
        s.b.reply(
            &st,
            Message::from(CacheValue {
                tenant_id: g.tenant_id,
                namespace: g.namespace,
                cache: g.cache,
                key: g.key,
                value: Some(Bytes::from_static(b"v")),
                request_id: g.request_id,
            }),
        )
        .await?;
        Ok(())
    };
    let (a, ()) = both(s.d.call(op), broker).await?;
    ok(&a, "the next cache_get")?;
    Ok(())
}

// ---------------------------------------------------------------- reconnect

async fn reconnect_publish(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, _) = both(
        s.d.call(publish_op("orders", "before", "per_message")),
        serve_ok(&mut s.b),
    )
    .await?;
    ok(&a, "publish before the close")?;
    let before = s.b.connections();
    s.b.close_connection(before - 1)?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let broker = async {
        let (st, f, _) = request_on(&mut s.b, Role::Control).await?;
        s.b.reply(&st, ok_reply(&f)?).await?;
        Ok::<_, CaseError>(st)
    };
    let (a, st) = both(
        s.d.call(publish_op("orders", "after", "per_message")),
        broker,
    )
    .await?;
    ok(&a, "publish after the broker closed the connection")?;
    if st.conn < before {
        return fail(format!("the publish after the close came on the old {st}"));
    }
    Ok(())
}

async fn reconnect_resume(s: &mut Session) -> R {
    s.connect(json!({})).await?;
    let (a, (_, mut e, conn)) = both(
        s.d.call(subscribe_op("a", json!("latest"), true)),
        serve_subscribe(&mut s.b, false),
    )
    .await?;
    ok(&a, "subscribe with resume")?;
    e.send(BinarySharedEventBatch {
        base_offset: Some(0),
        payloads: payloads(&["r0", "r1", "r2"]),
    })
    .await?;
    expect_events(s, "a", &[(Some(0), "r0"), (Some(1), "r1"), (Some(2), "r2")]).await?;
    s.b.close_connection(conn)?;
    let broker = async {
        let (sub, mut e, new_conn) = serve_subscribe(&mut s.b, false).await?;
        if sub.start != Some(StartPosition::Offset(3)) {
            return fail(format!(
                "after offsets 0..2 were delivered, the client must resubscribe from {{offset: 3}}, it sent start {:?}",
                sub.start
            ));
        }
        if new_conn == conn {
            return fail("the resubscribe came on the closed connection");
        }
        e.send(BinaryEventBatch {
            subscription_id: sub.subscription_id.unwrap_or(1),
            base_offset: Some(3),
            payloads: payloads(&["r3"]),
        })
        .await?;
        e.send(BinarySharedEventBatch {
            base_offset: Some(4),
            payloads: payloads(&["r4"]),
        })
        .await?;
        Ok::<_, CaseError>(())
    };
    let wait = s.timeout;
    let (a, ()) = both(
        s.d.call_within(
            json!({"op": "next", "sub": "a", "timeoutMs": wait.as_millis() as u64}),
            wait,
        ),
        broker,
    )
    .await
    .map_err(|e| match e {
        CaseError::Fail(m) => CaseError::Fail(format!(
            "after the broker closed the subscription's connection (offsets 0..2 delivered), next: {m}"
        )),
        other => other,
    })?;
    is_event(&a, "the first event after the reconnect", Some(3), "r3")?;
    expect_events(s, "a", &[(Some(4), "r4")]).await
}
