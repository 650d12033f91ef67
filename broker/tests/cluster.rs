//! Cluster mode against real `nats-server` processes on loopback.
//!
//! Each test starts its own server(s) in a temp directory on free ports.
//! Without `nats-server` on the PATH the tests say so and pass
//! (`scripts/test` installs it, so CI always runs them).

mod support;

use std::time::Duration;

use support::nats::NatsServer;

macro_rules! need_nats {
    () => {
        if !NatsServer::available() {
            eprintln!("skipped: nats-server is not installed (scripts/test installs it)");
            return;
        }
    };
}

#[tokio::test]
async fn the_test_helper_starts_jetstream_alone_and_as_a_cluster() {
    need_nats!();
    let single = NatsServer::single();
    single.wait_ready().await;
    let cluster = NatsServer::cluster3();
    cluster.wait_ready().await;
    let client = async_nats::connect(cluster.nodes[0].url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "helper".into(),
            subjects: vec!["helper.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    let ack = js
        .publish("helper.x", "hi".into())
        .await
        .expect("sent")
        .await
        .expect("stored");
    assert_eq!(ack.sequence, 1);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
