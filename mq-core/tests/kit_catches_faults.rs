//! The conformance kit fails backends that break a guarantee.
//!
//! Each test wraps the in-memory broker in a deliberately faulty adapter and asserts that the
//! scenario guarding that guarantee fails. Without these, a scenario that cannot fail would go
//! unnoticed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mq_core::testkit::{self, BackendFactory, Capabilities};
use mq_core::{
    Acknowledger, Delivery, DeliveryStream, MemoryBroker, Message, Nack, Publisher, Result,
    Settlement, Subscriber,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// `nack(Requeue)` acks instead: the message is lost.
    DropsNacked,
    /// A dropped delivery is acked instead of handed back.
    DropsAbandoned,
    /// Dead letters are acked and never reach `<topic>.dlq`.
    DropsDeadLetters,
    /// Headers are not delivered.
    LosesHeaders,
    /// Every subscription joins the same group: no fan-out across groups.
    IgnoresGroups,
    /// Every fifth publish is acknowledged but not stored.
    LosesPublishes,
    /// Closing the subscriber leaves its streams open.
    StreamsOutliveClose,
    /// Each keyed message is held back until the next one with the same key is published.
    Reorders,
    /// Acks are ignored, so acked messages come back.
    IgnoresAcks,
    /// Every topic is the same topic.
    MergesTopics,
    /// Refuses a message to a topic nobody subscribed to, marked `drop_if_unrouted` or not.
    RefusesUnrouted,
}

fn topic_for(fault: Fault, topic: &str) -> &str {
    if fault == Fault::MergesTopics {
        "one-topic-for-all"
    } else {
        topic
    }
}

struct Faulty {
    broker: MemoryBroker,
    fault: Fault,
    /// The topics subscribed to so far, for `RefusesUnrouted`.
    subscribed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            broker: MemoryBroker::new(),
            fault,
            subscribed: Arc::default(),
        }
    }
}

#[async_trait]
impl BackendFactory for Faulty {
    async fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(FaultyPublisher {
            inner: self.broker.publisher(),
            fault: self.fault,
            count: Default::default(),
            held: Default::default(),
            subscribed: self.subscribed.clone(),
        })
    }

    async fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(FaultySubscriber {
            inner: self.broker.subscriber(),
            fault: self.fault,
            subscribed: self.subscribed.clone(),
        })
    }
}

struct FaultyPublisher {
    inner: mq_core::MemoryPublisher,
    fault: Fault,
    count: std::sync::atomic::AtomicUsize,
    held: std::sync::Mutex<HashMap<String, Message>>,
    subscribed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

#[async_trait]
impl Publisher for FaultyPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.fault == Fault::LosesPublishes && n % 5 == 4 {
            return Ok(());
        }
        if self.fault == Fault::RefusesUnrouted && !self.subscribed.lock().unwrap().contains(topic)
        {
            return Err(mq_core::Error::Rejected(format!(
                "no queue is bound to {topic}"
            )));
        }
        if let (Fault::Reorders, Some(key)) = (self.fault, message.key()) {
            let held = self.held.lock().unwrap().remove(key);
            let Some(earlier) = held else {
                self.held.lock().unwrap().insert(key.to_owned(), message);
                return Ok(());
            };
            self.inner.publish(topic, message).await?;
            return self.inner.publish(topic, earlier).await;
        }
        self.inner
            .publish(topic_for(self.fault, topic), message)
            .await
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct FaultySubscriber {
    inner: mq_core::MemorySubscriber,
    fault: Fault,
    subscribed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

#[async_trait]
impl Subscriber for FaultySubscriber {
    async fn subscribe(&self, topic: &str, group: &str) -> Result<DeliveryStream> {
        let group = if self.fault == Fault::IgnoresGroups {
            "one-group-for-all"
        } else {
            group
        };
        let fault = self.fault;
        self.subscribed.lock().unwrap().insert(topic.to_owned());
        let stream = self.inner.subscribe(topic_for(fault, topic), group).await?;
        let stream = stream.map(move |item| item.map(|delivery| wrap(delivery, fault)));
        match fault {
            Fault::StreamsOutliveClose => {
                // Keep the stream pending forever instead of ending it.
                Ok(Box::pin(stream.chain(futures::stream::pending())))
            }
            _ => Ok(Box::pin(stream)),
        }
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

fn wrap(delivery: Delivery, fault: Fault) -> Delivery {
    let topic = delivery.topic().to_owned();
    let attempt = delivery.attempt();
    let original = delivery.message();
    let message = if fault == Fault::LosesHeaders {
        Message::from_parts(
            original.id(),
            original.key().map(str::to_owned),
            BTreeMap::new(),
            original.payload().clone(),
        )
    } else {
        original.clone()
    };
    Delivery::new(
        topic,
        message,
        attempt,
        Box::new(FaultyAck {
            inner: delivery,
            fault,
        }),
    )
}

struct FaultyAck {
    inner: Delivery,
    fault: Fault,
}

#[async_trait]
impl Acknowledger for FaultyAck {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        match (self.fault, settlement) {
            (Fault::IgnoresAcks, Settlement::Ack) => {
                drop(self.inner);
                Ok(())
            }
            (_, Settlement::Ack)
            | (Fault::DropsNacked, Settlement::Nack(Nack::Requeue))
            | (Fault::DropsDeadLetters, Settlement::Nack(Nack::DeadLetter { .. })) => {
                self.inner.ack().await
            }
            (_, Settlement::Nack(nack)) => self.inner.nack(nack).await,
        }
    }

    fn abandon(self: Box<Self>) {
        if self.fault == Fault::DropsAbandoned {
            tokio::spawn(self.inner.ack());
        }
        // Otherwise dropping the inner delivery hands the message back.
    }
}

fn caps() -> Capabilities {
    Capabilities {
        receive_timeout: Duration::from_secs(2),
        quiet_period: Duration::from_millis(200),
        ..Capabilities::default()
    }
}

/// Runs `scenario` against a broker with `fault` and asserts that it fails.
async fn must_fail<F, Fut>(fault: Fault, scenario: F)
where
    F: FnOnce(Arc<Faulty>, Capabilities) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let factory = Arc::new(Faulty::new(fault));
    let outcome = tokio::spawn(scenario(factory, caps())).await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "the scenario passed although the backend has fault {fault:?}"
    );
}

macro_rules! catches {
    ($test:ident, $fault:expr, $scenario:ident) => {
        #[tokio::test]
        async fn $test() {
            must_fail($fault, |factory, caps| async move {
                testkit::$scenario(factory.as_ref(), &caps).await
            })
            .await;
        }
    };
}

catches!(
    nack_that_loses_the_message,
    Fault::DropsNacked,
    redelivery_after_nack
);
catches!(
    drop_that_loses_the_message,
    Fault::DropsAbandoned,
    dropped_delivery_is_redelivered
);
catches!(
    dead_letters_that_vanish,
    Fault::DropsDeadLetters,
    dead_letter
);
catches!(
    worker_dead_letters_that_vanish,
    Fault::DropsDeadLetters,
    worker_dead_letters
);
catches!(lost_headers, Fault::LosesHeaders, round_trip);
catches!(no_fan_out, Fault::IgnoresGroups, consumer_groups_fan_out);
catches!(
    lost_publishes,
    Fault::LosesPublishes,
    concurrent_publishers_and_subscribers
);
catches!(
    lost_publishes_on_close,
    Fault::LosesPublishes,
    publisher_close_flushes
);
catches!(
    streams_that_never_end,
    Fault::StreamsOutliveClose,
    concurrent_close
);
catches!(reordering, Fault::Reorders, order_per_key);
catches!(ignored_acks, Fault::IgnoresAcks, round_trip);
catches!(
    resume_loses_unacked,
    Fault::DropsAbandoned,
    resume_after_subscriber_close
);
catches!(
    many_topics_lose_messages,
    Fault::LosesPublishes,
    many_topics
);
catches!(
    handler_errors_lose_messages,
    Fault::LosesPublishes,
    continue_after_handler_errors
);
catches!(topics_that_leak, Fault::MergesTopics, topic_isolation);
catches!(
    unrouted_events_refused,
    Fault::RefusesUnrouted,
    unrouted_events_publish
);

/// The faults are real faults: the healthy broker passes the same scenarios.
#[tokio::test]
async fn healthy_broker_passes() {
    let factory = Faulty::new(Fault::DropsNacked);
    // DropsNacked only matters for nacks; a scenario without nacks passes.
    testkit::round_trip(&factory, &caps()).await;
}

/// `expect_nothing` waits out the whole quiet period: a delivery that comes after a (transient)
/// stream error fails it too.
#[tokio::test]
async fn expect_nothing_sees_a_delivery_after_a_stream_error() {
    let broker = MemoryBroker::new();
    let subscriber = broker.subscriber();
    let mut stream = subscriber.subscribe("t", "g").await.unwrap();
    broker
        .publisher()
        .publish("t", Message::new("late"))
        .await
        .unwrap();
    let delivery = stream.next().await.unwrap().unwrap();
    let error = mq_core::Error::Unavailable {
        message: "reconnecting".into(),
        source: None,
    };
    let mut faulty: DeliveryStream = Box::pin(futures::stream::iter([Err(error), Ok(delivery)]));
    let outcome = tokio::spawn(async move {
        testkit::expect_nothing(&mut faulty, &caps(), "nothing should arrive").await
    })
    .await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "a delivery after a stream error went unnoticed"
    );
}
