//! Dead letters: `Nack::DeadLetter` to `<topic>.dlq`, listing them and redriving them.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::dead_letters::{self, ReadOptions};
use crate::{dead_letter_topic, headers, DeliveryStream, Error, Message, Nack, Publisher};

use super::helpers::*;
use super::{BackendFactory, Capabilities};

/// A message nacked to the dead-letter topic arrives there intact with reason, attempt count and
/// original topic, and is not delivered on its own topic again.
pub async fn dead_letter(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, group, subscriber, mut stream) = fresh_subscription(factory, "dead_letter").await;
    let mut dead = subscriber
        .subscribe(&dead_letter_topic(&topic), &group)
        .await
        .expect("subscribe to the dead-letter topic");
    let sent = Message::new("poison")
        .with_key("k")
        .with_header("x-custom", "kept");
    factory
        .publisher()
        .await
        .publish(&topic, sent.clone())
        .await
        .expect("publish");

    let delivery = next(&mut stream, caps, "the poison message").await;
    delivery
        .nack(Nack::DeadLetter {
            reason: "cannot decode payload".into(),
            attempts: 3,
        })
        .await
        .expect("dead-letter");
    let letter = next(&mut dead, caps, "the dead letter").await;
    let message = letter.message();
    assert_eq!(message.payload(), sent.payload(), "payload kept");
    assert_eq!(message.key(), sent.key(), "key kept");
    assert_eq!(message.header("x-custom"), Some("kept"), "headers kept");
    assert_eq!(
        message.header(headers::DEAD_LETTER_REASON),
        Some("cannot decode payload")
    );
    assert_eq!(message.header(headers::ATTEMPTS), Some("3"));
    assert_eq!(
        message.header(headers::ORIGINAL_TOPIC),
        Some(topic.as_str())
    );
    letter.ack().await.expect("ack");
    expect_nothing(
        &mut stream,
        caps,
        "a dead-lettered message is not redelivered",
    )
    .await;
    subscriber.close().await.expect("close");
}

/// Dead-letters the next `n` deliveries of `stream` as "bad payload" after 2 attempts.
async fn dead_letter_next(stream: &mut DeliveryStream, n: usize, caps: &Capabilities) {
    for _ in 0..n {
        next(stream, caps, "a message to dead-letter")
            .await
            .nack(Nack::DeadLetter {
                reason: "bad payload".into(),
                attempts: 2,
            })
            .await
            .expect("dead-letter");
    }
}

/// A publisher that fails every publish after its first `succeed` ones.
struct FailsAfter {
    inner: Arc<dyn Publisher>,
    succeed: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Publisher for FailsAfter {
    async fn publish(&self, topic: &str, message: Message) -> crate::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        // One atomic step: a publish either takes one of the successes left or fails.
        if self
            .succeed
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_err()
        {
            return Err(Error::Unavailable {
                message: "the broker went away mid-redrive".into(),
                source: None,
            });
        }
        self.inner.publish(topic, message).await
    }

    async fn health(&self) -> crate::Result<()> {
        self.inner.health().await
    }

    async fn close(&self) -> crate::Result<()> {
        self.inner.close().await
    }
}

/// Dead letters are listed without being consumed, and redriven to their topic, where the group
/// gets them again without the dead-letter headers. A redrive whose publishes start failing
/// midway loses nothing: what it did not republish is still a dead letter. A redriven message
/// that fails again is a dead letter again.
pub async fn dead_letters_redrive(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _group, subscriber, mut stream) =
        fresh_subscription(factory, "dead_letters_redrive").await;
    let options = ReadOptions {
        group: unique("dlq"),
        limit: 10,
        first_wait: caps.receive_timeout,
        idle: caps.quiet_period,
    };
    declare_group(
        subscriber.as_ref(),
        &dead_letter_topic(&topic),
        &options.group,
    )
    .await;
    let publisher = factory.publisher().await;
    let sent: Vec<Message> = (0..3)
        .map(|n| numbered("poison", n).with_key(format!("k{n}")))
        .collect();
    publish_all(publisher.as_ref(), &topic, &sent).await;
    dead_letter_next(&mut stream, 3, caps).await;
    let ids = |messages: &[Message]| -> HashSet<String> {
        messages.iter().map(|m| m.id().to_owned()).collect()
    };

    for listing in 0..2 {
        let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
            .await
            .expect("list");
        let listed: Vec<Message> = letters.iter().map(|l| l.message.clone()).collect();
        assert_eq!(
            ids(&listed),
            ids(&sent),
            "listing {listing} shows every dead letter"
        );
        for letter in &letters {
            assert_eq!(letter.reason.as_deref(), Some("bad payload"));
            assert_eq!(letter.attempts, Some(2));
            let original = sent.iter().find(|m| m.id() == letter.message.id()).unwrap();
            assert_eq!(&letter.message, original, "the message as it was published");
        }
    }

    let failing = FailsAfter {
        inner: publisher.clone(),
        succeed: 1.into(),
    };
    dead_letters::redrive(subscriber.as_ref(), &failing, &topic, &options)
        .await
        .expect_err("the second publish fails");
    let first = next(&mut stream, caps, "the one redriven message").await;
    let original = sent
        .iter()
        .find(|m| m.id() == first.message().id())
        .unwrap();
    assert_eq!(
        first.message(),
        original,
        "redriven without dead-letter headers"
    );
    first.ack().await.expect("ack");

    let redriven = dead_letters::redrive(subscriber.as_ref(), publisher.as_ref(), &topic, &options)
        .await
        .expect("redrive");
    assert_eq!(redriven, 2, "the rest were still dead letters");
    let rest: HashSet<String> = ids(&sent)
        .into_iter()
        .filter(|id| id != original.id())
        .collect();
    let mut again = Vec::new();
    for _ in 0..2 {
        again.push(next(&mut stream, caps, "a redriven message").await);
    }
    let received: HashSet<String> = again.iter().map(|d| d.message().id().to_owned()).collect();
    assert_eq!(received, rest);
    let fails_again = again.pop().unwrap();
    let fails_again_id = fails_again.message().id().to_owned();
    fails_again
        .nack(Nack::DeadLetter {
            reason: "still bad".into(),
            attempts: 1,
        })
        .await
        .expect("dead-letter again");
    again.pop().unwrap().ack().await.expect("ack");

    // What failed again is a dead letter again, with its new reason, and the only one left.
    let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].message.id(), fails_again_id);
    assert_eq!(letters[0].reason.as_deref(), Some("still bad"));
    subscriber.close().await.expect("close");
}
