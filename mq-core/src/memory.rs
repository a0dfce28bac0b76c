//! The in-memory broker: the embedded default backend.
//!
//! It keeps the same contracts as the networked brokers (consumer groups, redelivery on nack and
//! on drop, order per key, dead letters to `<topic>.dlq`) and passes the same conformance kit, so
//! a pipeline that works on it behaves the same on RabbitMQ or Kafka. Messages live as long as the
//! [`MemoryBroker`] value: it is not persistent across process restarts.
//!
//! Each topic is a log. A message stays in the log until every consumer group of the topic has
//! acked it; a topic without groups keeps its messages for the first group that subscribes (like
//! a durable queue), and a group that joins later starts at the oldest retained message.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    dead_letter_topic, Acknowledger, Delivery, DeliveryStream, Error, Message, Nack, Origin,
    Publisher, Result, Settlement, Subscriber,
};

/// An in-process message broker. Cheap to clone: clones share the same topics.
///
/// ```
/// use futures::StreamExt;
/// use mq_core::{MemoryBroker, Message, Publisher, Subscriber};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
/// let broker = MemoryBroker::new();
/// let publisher = broker.publisher();
/// publisher.publish("jobs", Message::new("first").with_key("a")).await?;
///
/// // A group that subscribes later still gets the retained message.
/// let mut jobs = broker.subscriber().subscribe("jobs", "workers").await?;
/// let job = jobs.next().await.unwrap()?;
/// assert_eq!(job.attempt(), 1);
/// job.requeue().await?; // handed back ...
/// let again = jobs.next().await.unwrap()?;
/// assert_eq!(again.attempt(), 2); // ... and delivered again
/// again.ack().await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, Topic>>,
}

struct Topic {
    /// Offset of `log[0]`.
    base: u64,
    log: VecDeque<Message>,
    groups: HashMap<String, Group>,
}

struct Group {
    /// Offsets that may be delivered now, oldest first (new, nacked or abandoned).
    ready: BTreeSet<u64>,
    /// Offsets delivered and not settled yet, with their keys.
    in_flight: BTreeMap<u64, Option<String>>,
    /// Keys with a message in flight: the next message of such a key waits, which keeps order
    /// per key even with competing consumers and redelivery.
    busy_keys: HashSet<String>,
    /// Deliveries so far per unsettled offset.
    attempts: HashMap<u64, u32>,
    notify: Arc<Notify>,
}

impl Topic {
    fn new() -> Self {
        Self {
            base: 0,
            log: VecDeque::new(),
            groups: HashMap::new(),
        }
    }

    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn message(&self, offset: u64) -> &Message {
        &self.log[(offset - self.base) as usize]
    }

    fn append(&mut self, message: Message) {
        let offset = self.end();
        self.log.push_back(message);
        for group in self.groups.values_mut() {
            group.ready.insert(offset);
            group.notify.notify_waiters();
        }
    }

    fn group(&mut self, name: &str) -> &mut Group {
        let (base, end) = (self.base, self.end());
        self.groups.entry(name.to_owned()).or_insert_with(|| Group {
            ready: (base..end).collect(),
            in_flight: BTreeMap::new(),
            busy_keys: HashSet::new(),
            attempts: HashMap::new(),
            notify: Arc::new(Notify::new()),
        })
    }

    /// Drops the messages every group has acked.
    fn trim(&mut self) {
        let oldest_needed = self
            .groups
            .values()
            .map(|group| {
                let ready = group.ready.first().copied();
                let in_flight = group.in_flight.keys().next().copied();
                ready.into_iter().chain(in_flight).min().unwrap_or(u64::MAX)
            })
            .min()
            .unwrap_or(self.base) // no group yet: keep everything
            .min(self.end());
        while self.base < oldest_needed {
            self.log.pop_front();
            self.base += 1;
        }
    }
}

impl Group {
    /// Takes the oldest ready offset whose key is not busy; returns it with its attempt number.
    fn take_next<'a>(&mut self, message_at: impl Fn(u64) -> &'a Message) -> Option<(u64, u32)> {
        let offset = *self.ready.iter().find(|&&offset| {
            message_at(offset)
                .key()
                .is_none_or(|key| !self.busy_keys.contains(key))
        })?;
        self.ready.remove(&offset);
        let key = message_at(offset).key().map(str::to_owned);
        if let Some(key) = &key {
            self.busy_keys.insert(key.clone());
        }
        self.in_flight.insert(offset, key);
        let attempt = self.attempts.entry(offset).or_insert(0);
        *attempt += 1;
        Some((offset, *attempt))
    }

    /// Ends the in-flight state of `offset`; returns `false` if it was not in flight.
    fn release(&mut self, offset: u64) -> bool {
        let Some(key) = self.in_flight.remove(&offset) else {
            return false;
        };
        if let Some(key) = key {
            self.busy_keys.remove(&key);
        }
        self.notify.notify_waiters();
        true
    }
}

impl Inner {
    fn publish(&self, topic: &str, message: Message) {
        let mut topics = self.topics.lock();
        let unrouted = topics
            .get(topic)
            .is_none_or(|topic| topic.groups.is_empty());
        if unrouted && message.drops_if_unrouted() {
            // Kept, it would wait for a group that may never come: a leak.
            return;
        }
        topics
            .entry(topic.to_owned())
            .or_insert_with(Topic::new)
            .append(message);
    }

    fn join(&self, topic: &str, group: &str) -> Arc<Notify> {
        let mut topics = self.topics.lock();
        let topic = topics.entry(topic.to_owned()).or_insert_with(Topic::new);
        topic.group(group).notify.clone()
    }

    fn take_next(self: &Arc<Self>, topic_name: &str, group_name: &str) -> Option<Delivery> {
        let mut topics = self.topics.lock();
        let Topic { base, log, groups } = topics.get_mut(topic_name)?;
        let (base, log) = (*base, &*log);
        let message_at = move |offset: u64| &log[(offset - base) as usize];
        let (offset, attempt) = groups.get_mut(group_name)?.take_next(message_at)?;
        let message = message_at(offset).clone();
        let acknowledger = MemoryAcknowledger {
            broker: self.clone(),
            topic: topic_name.to_owned(),
            group: group_name.to_owned(),
            offset,
        };
        Some(
            Delivery::new(topic_name, message, attempt, Box::new(acknowledger))
                .with_origin(Origin::system("memory")),
        )
    }

    fn settle(&self, topic_name: &str, group_name: &str, offset: u64, settlement: Settlement) {
        let mut topics = self.topics.lock();
        let Some(topic) = topics.get_mut(topic_name) else {
            return;
        };
        let Some(group) = topic.groups.get_mut(group_name) else {
            return;
        };
        if !group.release(offset) {
            return;
        }
        match settlement {
            Settlement::Nack(Nack::Requeue) => {
                group.ready.insert(offset);
            }
            Settlement::Ack => {
                group.attempts.remove(&offset);
                topic.trim();
            }
            Settlement::Nack(Nack::DeadLetter { reason, attempts }) => {
                group.attempts.remove(&offset);
                let dead = topic
                    .message(offset)
                    .dead_letter(topic_name, &reason, attempts);
                topic.trim();
                topics
                    .entry(dead_letter_topic(topic_name))
                    .or_insert_with(Topic::new)
                    .append(dead);
            }
        }
    }
}

struct MemoryAcknowledger {
    broker: Arc<Inner>,
    topic: String,
    group: String,
    offset: u64,
}

#[async_trait]
impl Acknowledger for MemoryAcknowledger {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        self.broker
            .settle(&self.topic, &self.group, self.offset, settlement);
        Ok(())
    }

    fn abandon(self: Box<Self>) {
        self.broker.settle(
            &self.topic,
            &self.group,
            self.offset,
            Settlement::Nack(Nack::Requeue),
        );
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher for this broker. Closing it does not affect other publishers.
    pub fn publisher(&self) -> MemoryPublisher {
        MemoryPublisher {
            broker: self.inner.clone(),
            closed: CancellationToken::new(),
        }
    }

    /// A subscriber for this broker. Closing it ends its own subscriptions only.
    pub fn subscriber(&self) -> MemorySubscriber {
        MemorySubscriber {
            broker: self.inner.clone(),
            closed: CancellationToken::new(),
        }
    }

    /// How many messages of `topic` are retained (not yet acked by every group).
    pub fn retained(&self, topic: &str) -> usize {
        self.inner
            .topics
            .lock()
            .get(topic)
            .map_or(0, |t| t.log.len())
    }
}

/// [`Publisher`] of a [`MemoryBroker`].
#[derive(Clone)]
pub struct MemoryPublisher {
    broker: Arc<Inner>,
    closed: CancellationToken,
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed("publisher"));
        }
        self.broker.publish(topic, message);
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        // Publishes complete synchronously, so nothing is outstanding.
        self.closed.cancel();
        Ok(())
    }
}

/// [`Subscriber`] of a [`MemoryBroker`].
#[derive(Clone)]
pub struct MemorySubscriber {
    broker: Arc<Inner>,
    closed: CancellationToken,
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    /// Creates the group, so that from now on the topic keeps messages for it, events marked
    /// [`Message::drop_if_unrouted`] included.
    async fn declare(&self, topic: &str, group: &str) -> Result<()> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        self.broker.join(topic, group);
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<DeliveryStream> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        let notify = self.broker.join(topic, group);
        let state = (
            self.broker.clone(),
            topic.to_owned(),
            group.to_owned(),
            notify,
            self.closed.clone(),
        );
        let stream =
            futures::stream::unfold(state, |(broker, topic, group, notify, closed)| async move {
                let delivery = loop {
                    if closed.is_cancelled() {
                        return None;
                    }
                    // Register for wake-ups before looking, so a publish between the look and
                    // the wait is not missed.
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(delivery) = broker.take_next(&topic, &group) {
                        break delivery;
                    }
                    tokio::select! {
                        () = notified => {}
                        () = closed.cancelled() => return None,
                    }
                };
                Some((Ok(delivery), (broker, topic, group, notify, closed)))
            });
        Ok(Box::pin(stream))
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.closed.cancel();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn acked_messages_are_trimmed_once_every_group_has_them() {
        let broker = MemoryBroker::new();
        let mut a = broker.subscriber().subscribe("t", "a").await.unwrap();
        let mut b = broker.subscriber().subscribe("t", "b").await.unwrap();
        broker
            .publisher()
            .publish("t", Message::new("x"))
            .await
            .unwrap();
        assert_eq!(broker.retained("t"), 1);
        a.next().await.unwrap().unwrap().ack().await.unwrap();
        assert_eq!(broker.retained("t"), 1, "group b has not acked yet");
        b.next().await.unwrap().unwrap().ack().await.unwrap();
        assert_eq!(broker.retained("t"), 0);
    }

    /// An event nobody subscribed to is not kept (it would be, for ever), unlike a message
    /// without the mark, which waits for the first group.
    #[tokio::test]
    async fn unrouted_events_are_not_kept() {
        let broker = MemoryBroker::new();
        let publisher = broker.publisher();
        for _ in 0..3 {
            publisher
                .publish("t", Message::new("e").drop_if_unrouted())
                .await
                .unwrap();
        }
        assert_eq!(broker.retained("t"), 0);
        publisher.publish("t", Message::new("m")).await.unwrap();
        assert_eq!(broker.retained("t"), 1);
        broker.subscriber().declare("t", "g").await.unwrap();
        publisher
            .publish("t", Message::new("e").drop_if_unrouted())
            .await
            .unwrap();
        assert_eq!(broker.retained("t"), 2, "a group is there: kept for it");
    }

    #[tokio::test]
    async fn a_busy_key_waits_but_other_keys_go_ahead() {
        let broker = MemoryBroker::new();
        let publisher = broker.publisher();
        for (key, body) in [("k", "k1"), ("k", "k2"), ("j", "j1")] {
            publisher
                .publish("t", Message::new(body).with_key(key))
                .await
                .unwrap();
        }
        let mut stream = broker.subscriber().subscribe("t", "g").await.unwrap();
        let k1 = stream.next().await.unwrap().unwrap();
        let next = stream.next().await.unwrap().unwrap();
        assert_eq!(&next.message().payload()[..], b"j1", "k2 waits for k1");
        k1.ack().await.unwrap();
        let k2 = stream.next().await.unwrap().unwrap();
        assert_eq!(&k2.message().payload()[..], b"k2");
        next.ack().await.unwrap();
        k2.ack().await.unwrap();
    }
}
