//! Consumer groups: every group gets every message, the members of one group share them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::helpers::*;
use super::{BackendFactory, Capabilities};

/// Two groups on one topic each receive every message.
pub async fn consumer_groups_fan_out(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.consumer_groups {
        return skip("consumer_groups_fan_out", "no consumer groups");
    }
    let topic = unique("fan_out");
    let subscriber = factory.subscriber().await;
    let mut first = subscriber
        .subscribe(&topic, &unique("g1"))
        .await
        .expect("subscribe");
    let mut second = subscriber
        .subscribe(&topic, &unique("g2"))
        .await
        .expect("subscribe");
    let messages: Vec<_> = (0..20).map(|n| numbered("fan", n)).collect();
    let ids: HashSet<String> = messages.iter().map(|m| m.id().to_owned()).collect();
    publish_all(factory.publisher().await.as_ref(), &topic, &messages).await;
    let (a, b) = tokio::join!(
        receive_ids(&mut first, &ids, caps),
        receive_ids(&mut second, &ids, caps)
    );
    assert_eq!(a.len(), ids.len());
    assert_eq!(b.len(), ids.len());
    subscriber.close().await.expect("close");
}

/// Two subscribers of one group split the messages: both get some, none is lost, none is handled
/// by both. Messages are published in rounds until both have some, so backends that assign
/// partitions lazily (Kafka) pass too.
pub async fn consumer_group_splits_work(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.consumer_groups {
        return skip("consumer_group_splits_work", "no consumer groups");
    }
    let (topic, group) = (unique("split"), unique("group"));
    let counts = Arc::new(Mutex::new([
        HashMap::<String, usize>::new(),
        HashMap::new(),
    ]));
    let stop = CancellationToken::new();
    let mut consumers = Vec::new();
    let mut subscribers = Vec::new();
    for index in 0..2 {
        let subscriber = factory.subscriber().await;
        let stream = subscriber
            .subscribe(&topic, &group)
            .await
            .expect("subscribe");
        subscribers.push(subscriber);
        let counts = counts.clone();
        // Each member pauses a little after each message so the other gets a share even on a
        // fast broker.
        consumers.push(tokio::spawn(ack_until(
            stream,
            stop.clone(),
            Duration::from_millis(2),
            move |id| {
                *counts.lock().unwrap()[index].entry(id).or_default() += 1;
            },
        )));
    }
    let publisher = factory.publisher().await;
    let mut ids = HashSet::new();
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    for round in 0.. {
        let batch: Vec<_> = (0..20)
            .map(|n| numbered("split", round * 20 + n).with_key(format!("k{}", round * 20 + n)))
            .collect();
        ids.extend(batch.iter().map(|m| m.id().to_owned()));
        publisher
            .publish_batch(&topic, batch)
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let both_busy = counts.lock().unwrap().iter().all(|c| !c.is_empty());
        if both_busy {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one member of the group never got a message"
        );
    }
    wait_for_all(caps, "messages never arrived", || {
        let counts = counts.lock().unwrap();
        ids.iter()
            .filter(|id| !counts[0].contains_key(*id) && !counts[1].contains_key(*id))
            .count()
    })
    .await;
    stop.cancel();
    for consumer in consumers {
        consumer.await.expect("consumer");
    }
    {
        let counts = counts.lock().unwrap();
        let both = counts[0]
            .keys()
            .filter(|id| counts[1].contains_key(*id))
            .count();
        assert_eq!(both, 0, "{both} messages went to both members of one group");
    }
    for subscriber in subscribers {
        subscriber.close().await.expect("close");
    }
}
