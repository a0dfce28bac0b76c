//! Behaviour beyond the conformance kit, against a real RabbitMQ (`AMQP_URL`): outages simulated
//! with a local TCP proxy (so no other user of the broker is disturbed), exact attempt counting,
//! unroutable publishes, dead letters without a dead-letter subscriber.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_core::testkit::next;
use mq_core::{dead_letter_topic, headers, Error, Message, Nack, Publisher, Subscriber};
use mq_rabbit::{RabbitConfig, RabbitPublisher, RabbitSubscriber};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP proxy to the broker that can be taken down (every connection cut, new ones refused)
/// and brought back.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: std::sync::Mutex<CancellationToken>,
}

impl Proxy {
    async fn start(upstream: String) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Arc::new(Self {
            port: listener.local_addr().unwrap().port(),
            down: Arc::new(AtomicBool::new(false)),
            cut: std::sync::Mutex::new(CancellationToken::new()),
        });
        let weak = Arc::downgrade(&proxy);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Some(proxy) = weak.upgrade() else { return };
                if proxy.down.load(Ordering::SeqCst) {
                    drop(client); // the "broker" is down
                    continue;
                }
                let cut = proxy.cut.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    fn bring_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The factory's config, with the URL pointed at a proxy in front of the broker.
async fn through_proxy() -> Option<(RabbitConfig, Arc<Proxy>)> {
    let rabbit = common::factory_or_none().await?;
    let url = rabbit.config.url.clone();
    let (scheme_and_auth, rest) = url
        .rsplit_once('@')
        .unwrap_or(("amqp://", &url["amqp://".len()..]));
    let (host_port, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    let proxy = Proxy::start(upstream).await;
    let separator = if scheme_and_auth.ends_with("://") {
        ""
    } else {
        "@"
    };
    let proxied = format!(
        "{scheme_and_auth}{separator}127.0.0.1:{}/{vhost}",
        proxy.port
    );
    let mut config = rabbit.config;
    config.url = proxied;
    Some((config, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_fast_while_disconnected_and_everything_resumes() {
    let caps = common::capabilities();
    let Some((config, proxy)) = through_proxy().await else {
        return;
    };
    let topic = mq_core::testkit::unique("recovery.outage");
    let subscriber = RabbitSubscriber::connect(config.clone())
        .await
        .expect("subscriber");
    let mut stream = subscriber.subscribe(&topic, "g").await.expect("subscribe");
    let publisher = RabbitPublisher::connect(config).await.expect("publisher");
    publisher
        .publish(&topic, Message::new("before"))
        .await
        .expect("publish");
    next(&mut stream, &caps, "the message before the outage")
        .await
        .ack()
        .await
        .expect("ack");

    proxy.take_down();
    // The first publish may still see the old connection for a moment; then every publish must
    // fail at once with a transient error.
    let deadline = Instant::now() + Duration::from_secs(10);
    // A publish confirmed before the cut took effect is stored and will be delivered; so may be
    // one whose confirm was lost with the connection (an `Err` means "may not be stored").
    let mut confirmed_during = std::collections::HashSet::new();
    let error = loop {
        let started = Instant::now();
        let during = Message::new("during");
        let id = during.id().to_owned();
        match publisher.publish(&topic, during).await {
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "publish failed slowly"
                );
                break error;
            }
            Ok(()) => assert!(
                confirmed_during.insert(id) && Instant::now() < deadline,
                "publishes kept succeeding while down"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.is_transient(), "{error}");
    for _ in 0..5 {
        let started = Instant::now();
        let error = publisher
            .publish(&topic, Message::new("during"))
            .await
            .expect_err("the broker is unreachable");
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_millis(100), "fail fast");
    }
    assert!(publisher.health().await.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscriber.health().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the subscriber never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.bring_up();
    let after = Message::new("after");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = publisher.publish(&topic, after.clone()).await {
        assert!(error.is_transient(), "{error}");
        assert!(
            Instant::now() < deadline,
            "publisher never reconnected: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let delivery = next(&mut stream, &caps, "the message after the outage").await;
        let message = delivery.message().clone();
        delivery.ack().await.expect("ack after reconnect");
        if message.id() == after.id() {
            break;
        }
        // An ack that was written just before the cut may never have reached the broker (AMQP
        // acks are not confirmed): "before" may come again. At least once.
        assert!(
            matches!(&message.payload()[..], b"during" | b"before"),
            "unexpected message {message:?}"
        );
        confirmed_during.remove(message.id());
    }
    assert!(
        confirmed_during.is_empty(),
        "confirmed publishes were lost: {confirmed_during:?}"
    );
    publisher.health().await.expect("publisher healthy again");
    subscriber.health().await.expect("subscriber healthy again");
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_of_a_dead_connection_cannot_be_acked_and_comes_back() {
    let caps = common::capabilities();
    let Some((config, proxy)) = through_proxy().await else {
        return;
    };
    let topic = mq_core::testkit::unique("recovery.dead_ack");
    let subscriber = RabbitSubscriber::connect(config.clone())
        .await
        .expect("subscriber");
    let mut stream = subscriber.subscribe(&topic, "g").await.expect("subscribe");
    let publisher = RabbitPublisher::connect(config).await.expect("publisher");
    let sent = Message::new("hold me");
    publisher
        .publish(&topic, sent.clone())
        .await
        .expect("publish");
    let held = next(&mut stream, &caps, "the first delivery").await;
    assert_eq!(held.attempt(), 1);

    proxy.take_down();
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscriber.health().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the subscriber never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = held.ack().await.expect_err("the channel is gone");
    assert!(error.is_transient(), "{error}");
    proxy.bring_up();

    let again = next(&mut stream, &caps, "the redelivery after the reconnect").await;
    assert_eq!(again.message().id(), sent.id());
    assert!(again.attempt() >= 2, "attempt {}", again.attempt());
    again.ack().await.expect("ack on the new channel");
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_count_every_requeue() {
    let caps = common::capabilities();
    let Some(rabbit) = common::factory_or_none().await else {
        return;
    };
    let topic = mq_core::testkit::unique("recovery.attempts");
    let subscriber = RabbitSubscriber::connect(rabbit.config.clone())
        .await
        .expect("subscriber");
    let mut stream = subscriber.subscribe(&topic, "g").await.expect("subscribe");
    let publisher = RabbitPublisher::connect(rabbit.config)
        .await
        .expect("publisher");
    publisher
        .publish(&topic, Message::new("again"))
        .await
        .expect("publish");
    for expected in 1..=3 {
        let delivery = next(&mut stream, &caps, "the delivery").await;
        assert_eq!(delivery.attempt(), expected);
        delivery.nack(Nack::Requeue).await.expect("requeue");
    }
    let dropped = next(&mut stream, &caps, "the delivery").await;
    assert_eq!(dropped.attempt(), 4);
    drop(dropped); // abandon requeues too
    let last = next(&mut stream, &caps, "the delivery").await;
    assert_eq!(last.attempt(), 5);
    last.ack().await.expect("ack");
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_any_queue_is_rejected() {
    let Some(rabbit) = common::factory_or_none().await else {
        return;
    };
    let config = rabbit
        .config
        .with_unroutable_grace(Duration::from_millis(100));
    let publisher = RabbitPublisher::connect(config).await.expect("publisher");
    let topic = mq_core::testkit::unique("recovery.nobody");
    let error = publisher
        .publish(&topic, Message::new("lost?"))
        .await
        .expect_err("nobody subscribed");
    assert!(matches!(error, Error::Rejected(_)), "{error}");
    let error = publisher
        .publish_batch(&topic, vec![Message::new("a"), Message::new("b")])
        .await
        .expect_err("nobody subscribed");
    assert!(matches!(error, Error::Rejected(_)), "{error}");
    publisher.close().await.expect("close");
    assert!(matches!(
        publisher.publish(&topic, Message::new("late")).await,
        Err(Error::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_when_nobody_subscribed_to_the_dead_letter_topic() {
    let caps = common::capabilities();
    let Some(rabbit) = common::factory_or_none().await else {
        return;
    };
    let topic = mq_core::testkit::unique("recovery.dlq_default");
    let subscriber = RabbitSubscriber::connect(rabbit.config.clone())
        .await
        .expect("subscriber");
    let mut stream = subscriber.subscribe(&topic, "g").await.expect("subscribe");
    let publisher = RabbitPublisher::connect(rabbit.config.clone())
        .await
        .expect("publisher");
    let sent = Message::new("poison").with_key("k");
    publisher
        .publish(&topic, sent.clone())
        .await
        .expect("publish");
    next(&mut stream, &caps, "the poison message")
        .await
        .nack(Nack::DeadLetter {
            reason: "bad".into(),
            attempts: 2,
        })
        .await
        .expect("dead-letter");

    let mut dead = subscriber
        .subscribe(&dead_letter_topic(&topic), &rabbit.config.dead_letter_group)
        .await
        .expect("subscribe to the default dead-letter group");
    let letter = next(&mut dead, &caps, "the dead letter").await;
    assert_eq!(letter.message().id(), sent.id());
    assert_eq!(letter.message().key(), Some("k"));
    assert_eq!(
        letter.message().header(headers::DEAD_LETTER_REASON),
        Some("bad")
    );
    assert_eq!(letter.message().header(headers::ATTEMPTS), Some("2"));
    letter.ack().await.expect("ack");
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_group_keeps_messages_published_before_it_subscribes() {
    let caps = common::capabilities();
    let Some(rabbit) = common::factory_or_none().await else {
        return;
    };
    let config = rabbit.config.with_unroutable_grace(Duration::ZERO);
    let topic = mq_core::testkit::unique("recovery.declared");
    let publisher = RabbitPublisher::connect(config.clone())
        .await
        .expect("publisher");
    let queue = publisher
        .declare_group(&topic, "late")
        .await
        .expect("declare");
    assert_eq!(queue, mq_rabbit::queue_name(&topic, "late"));
    let early = Message::new("early").with_key("k");
    publisher
        .publish(&topic, early.clone())
        .await
        .expect("routable once declared");

    let subscriber = RabbitSubscriber::connect(config).await.expect("subscriber");
    let mut stream = subscriber
        .subscribe(&topic, "late")
        .await
        .expect("subscribe");
    let delivery = next(
        &mut stream,
        &caps,
        "the message published before subscribing",
    )
    .await;
    assert_eq!(delivery.message(), &early);
    delivery.ack().await.expect("ack");
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
}
