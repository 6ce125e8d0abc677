//! Several RabbitMQ URLs: a bus connects to the first that answers, and
//! when none does, its error names each URL's cause without passwords.
//! (Fail-over under load, on a real cluster, is `cluster.rs`.)

use std::net::TcpListener;

use weft_bus::{Bus, BusConfig, BusError};

/// A port on 127.0.0.1 nothing listens on (bound, then released).
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn config(url: String) -> BusConfig {
    BusConfig {
        url,
        connection_name: "fail-over".into(),
        ..BusConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_url_that_answers_is_used_and_every_cause_is_named_when_none_does() {
    let (url, _guard) = weft_bus::testing::fresh_vhost().await.expect("vhost");
    let dead = format!("amqp://guest:hidden@127.0.0.1:{}/%2f", dead_port());
    let bus = Bus::try_connect(config(format!("{dead}, {url}")))
        .await
        .expect("the second URL answers");
    bus.declare_topology(&["default".to_owned()])
        .await
        .expect("a usable connection");
    bus.close().await;

    let other = format!("amqp://guest:hidden@127.0.0.1:{}/%2f", dead_port());
    let err = Bus::try_connect(config(format!("{dead},{other}")))
        .await
        .expect_err("no URL answers");
    assert!(matches!(err, BusError::ConnectAll { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect to RabbitMQ at any of its 2 URLs: "),
        "{text}"
    );
    for url in [&dead, &other] {
        let shown = url.replace(":hidden@", ":***@");
        assert!(
            text.contains(&format!("{shown}: connection refused")),
            "{shown} not in {text}"
        );
    }
    assert!(!text.contains("hidden"), "a password shows: {text}");
    assert!(err.is_transient(), "a daemon retries it");

    // One URL fails as before: that URL and its cause.
    let err = Bus::try_connect(config(dead.clone()))
        .await
        .expect_err("dead");
    assert!(matches!(err, BusError::Connect { .. }), "{err:?}");
}
