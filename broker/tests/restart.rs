//! The real `felix-broker` process: SIGTERM under load delivers every acked
//! publish before the close, and a restarted broker lets a client resume
//! from an offset with no gap and no duplicate.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use felix_wire::{AckMode, Frame, Message, Publish, StartPosition, Subscribe};
use support::*;

fn spawn(data_dir: &std::path::Path, bind: &str) -> (Child, SocketAddr) {
    spawn_broker(data_dir, bind, &["--batch-linger-us", "2000"])
}

fn publish(i: u64) -> Message {
    Message::from(Publish {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "durable".into(),
        payload: Bytes::from(i.to_string()),
        request_id: Some(i),
        ack: Some(AckMode::PerMessage),
    })
}

async fn subscribe(peer: &Peer, id: u64, start: StartPosition) -> Reader {
    let mut c = peer.control("t1").await;
    c.send(Message::from(Subscribe {
        tenant_id: "t1".into(),
        namespace: "default".into(),
        stream: "durable".into(),
        subscription_id: Some(id),
        start: Some(start),
    }))
    .await;
    c.finish();
    let (_, r) = peer.accept_events().await;
    assert!(matches!(
        c.recv().await,
        Frame::Json(Message::Subscribed(_))
    ));
    r
}

/// Reads events until the stream ends: (offset, payload) pairs.
async fn drain(mut r: Reader) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    while let Ok(Some(f)) = r.next().await {
        let (base, payloads) = events(&f);
        for (i, p) in payloads.into_iter().enumerate() {
            out.push((base.expect("offsets negotiated") + i as u64, p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_acked_work_and_a_restart_resumes_without_gap_or_duplicate() {
    let dir = temp_dir("restart");
    let (mut broker, addr) = spawn(&dir.0, "127.0.0.1:0");
    let certs = certs(&dir.0);
    let peer = Peer::connect(addr, &certs).await.expect("connect");
    let first_events = tokio::spawn(drain(subscribe(&peer, 1, StartPosition::Latest).await));
    let publisher = Peer::connect(addr, &certs).await.expect("connect");
    let mut c = publisher.control("t1").await;
    let pid = broker.id().to_string();
    let mut acked = 0u64;
    // Publish until the broker goes away; SIGTERM arrives mid-stream.
    for i in 0..100_000u64 {
        if i == 200 {
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill");
        }
        if c.send
            .write_all(&Frame::Json(publish(i)).to_bytes().expect("encode"))
            .await
            .is_err()
        {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), c.reader.next()).await {
            Ok(Ok(Some(Frame::Json(Message::PublishOk(ok))))) if ok.request_id == i => acked += 1,
            _ => break,
        }
    }
    let delivered = tokio::time::timeout(Duration::from_secs(20), first_events)
        .await
        .expect("event stream ended")
        .expect("join");
    let status = broker.wait().expect("broker exits");
    assert!(status.success(), "graceful exit: {status}");
    assert!(acked >= 200, "{acked} publishes acked before the drain");
    assert!(
        delivered.len() as u64 >= acked,
        "every acked publish was delivered: {} < {acked}",
        delivered.len()
    );
    let offsets: Vec<u64> = delivered.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..delivered.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );

    // Restart on the same address and data directory; resume from an offset.
    let tail = delivered.len() as u64;
    let (mut again, addr2) = spawn(&dir.0, &addr.to_string());
    assert_eq!(addr2, addr);
    let peer = Peer::connect(addr2, &certs).await.expect("reconnect");
    let from = tail.saturating_sub(50);
    let mut resumed = subscribe(&peer, 2, StartPosition::Offset(from)).await;
    let mut c = peer.control("t1").await;
    c.send(publish(tail)).await;
    assert!(matches!(c.recv().await, Frame::Json(Message::PublishOk(_))));
    let mut got = Vec::new();
    while got.len() as u64 <= tail - from {
        let (base, payloads) = events(&resumed.recv().await);
        for (i, p) in payloads.into_iter().enumerate() {
            got.push((base.expect("offsets") + i as u64, p));
        }
    }
    let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (from..=tail).collect::<Vec<_>>(),
        "resumed with no gap and no duplicate"
    );
    assert_eq!(
        got[..(tail - from) as usize],
        delivered[from as usize..],
        "the replayed events are the ones delivered before"
    );
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .expect("kill");
    assert!(again.wait().expect("exit").success());
}
