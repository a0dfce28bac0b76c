//! The connection supervisor: connects, declares the exchange, opens the confirm channels, watches
//! for the connection to drop and reconnects with backoff.
//!
//! Every [`RabbitPublisher`](crate::RabbitPublisher) and
//! [`RabbitSubscriber`](crate::RabbitSubscriber) owns one [`Link`]. A [`Session`] is one live
//! AMQP connection; after a reconnect a new session (with a higher generation) replaces it, and
//! channels of the old one are never used again — so a delivery tag of a dead channel is never
//! acked on a new one.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::{Channel, Connection, ConnectionProperties};
use mq_core::{Error, Message, Result};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::{self, lapin_error};
use crate::topology;
use crate::RabbitConfig;

/// How often the supervisor double-checks the connection status (a close initiated by the
/// broker does not always reach the error callback).
const STATUS_POLL: Duration = Duration::from_millis(200);

/// What a link currently has.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Not connected (yet or any more); the last failure, if any.
    Down(Option<Failure>),
    /// Connected.
    Up(Arc<Session>),
    /// Closed by its owner; never connects again.
    Closed,
}

/// Why the last connection attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// What happened, for humans.
    reason: String,
    /// The broker refused (credentials, virtual host): trying again cannot help.
    permanent: bool,
}

impl Failure {
    fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One live connection with its confirm channels.
pub(crate) struct Session {
    pub(crate) connection: Connection,
    pub(crate) generation: u64,
    pub(crate) config: Arc<RabbitConfig>,
    confirm_channels: Vec<Mutex<Arc<Channel>>>,
    next_channel: AtomicUsize,
}

/// A publish whose frames were sent; awaiting it waits for the broker's confirm.
pub(crate) struct PendingConfirm {
    confirm: PublisherConfirm,
    timeout: Duration,
}

/// The error of a confirm that did not come in time.
pub(crate) fn confirm_timeout(topic: &str, after: Duration) -> Error {
    Error::Timeout {
        operation: format!("waiting for the publisher confirm of topic `{topic}`"),
        after,
    }
}

impl PendingConfirm {
    /// Waits for the confirm: `Ok` once the broker has the message durably, [`Error::Rejected`] if
    /// no queue is bound to the topic.
    pub(crate) async fn wait(self, topic: &str) -> Result<()> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.wait_untimed(topic))
            .await
            .map_err(|_| confirm_timeout(topic, timeout))?
    }

    /// Like [`wait`](Self::wait) without a timeout of its own (for batches, which use one timeout
    /// for all their confirms).
    pub(crate) async fn wait_untimed(self, topic: &str) -> Result<()> {
        let confirmation = self
            .confirm
            .await
            .map_err(|e| lapin_error("publisher confirm", e))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Error::Rejected(format!(
                    "no queue is bound to topic `{}` (broker returned {} {}); subscribe a group first",
                    topic, returned.reply_code, returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(Error::Unavailable {
                message: format!("the broker nacked a message of topic `{topic}`"),
                source: None,
            }),
            Confirmation::NotRequested => Err(Error::Unavailable {
                message: "the publish channel is not in confirm mode".into(),
                source: None,
            }),
        }
    }
}

impl Session {
    async fn open(config: Arc<RabbitConfig>, generation: u64, channels: usize) -> Result<Self> {
        let mut properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        if let Some(name) = &config.connection_name {
            properties = properties.with_connection_name(name.clone().into());
        }
        let connection = Connection::connect(&config.url, properties)
            .await
            .map_err(|e| lapin_error("connecting to RabbitMQ", e))?;
        let setup = connection
            .create_channel()
            .await
            .map_err(|e| lapin_error("opening a channel", e))?;
        topology::declare_exchange(&setup, &config).await?;
        drop(setup);
        let mut confirm_channels = Vec::with_capacity(channels);
        for _ in 0..channels {
            confirm_channels.push(Mutex::new(Arc::new(
                open_confirm_channel(&connection).await?,
            )));
        }
        Ok(Self {
            connection,
            generation,
            config,
            confirm_channels,
            next_channel: AtomicUsize::new(0),
        })
    }

    /// `true` while the connection is usable.
    pub(crate) fn connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Resolves when the connection is lost, with the reason.
    async fn lost(&self) -> String {
        let (tx, rx) = oneshot::channel::<String>();
        let tx = Mutex::new(Some(tx));
        self.connection.on_error(move |error| {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send(error.to_string());
            }
        });
        let poll = async {
            let mut interval = tokio::time::interval(STATUS_POLL);
            loop {
                interval.tick().await;
                if !self.connected() {
                    return format!("connection {:?}", self.connection.status().state());
                }
            }
        };
        tokio::select! {
            reason = rx => reason.unwrap_or_else(|_| "connection error".into()),
            reason = poll => reason,
        }
    }

    /// A confirm channel: the same one for the same key (order per key), round robin otherwise.
    /// A channel that died (e.g. closed by a channel error) is replaced.
    async fn confirm_channel(&self, key: Option<&str>) -> Result<Arc<Channel>> {
        let index = match key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() as usize
            }
            None => self.next_channel.fetch_add(1, Ordering::Relaxed),
        } % self.confirm_channels.len();
        let slot = &self.confirm_channels[index];
        let channel = slot.lock().clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        if !self.connected() {
            return Err(Error::Unavailable {
                message: "the connection to RabbitMQ is lost; reconnecting".into(),
                source: None,
            });
        }
        let fresh = Arc::new(open_confirm_channel(&self.connection).await?);
        let mut slot = slot.lock();
        if !slot.status().connected() {
            *slot = fresh;
        }
        Ok(slot.clone())
    }

    /// Sends `message` to `topic` (mandatory, persistent) and returns the pending confirm.
    pub(crate) async fn send(&self, topic: &str, message: &Message) -> Result<PendingConfirm> {
        let channel = self.confirm_channel(message.key()).await?;
        let confirm = channel
            .basic_publish(
                &self.config.exchange,
                topic,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                message.payload(),
                codec::properties(message),
            )
            .await
            .map_err(|e| lapin_error("publishing", e))?;
        Ok(PendingConfirm {
            confirm,
            timeout: self.config.confirm_timeout,
        })
    }

    /// Sends and waits for the confirm.
    pub(crate) async fn publish(&self, topic: &str, message: &Message) -> Result<()> {
        self.send(topic, message).await?.wait(topic).await
    }

    /// Closes the connection politely (confirm channels first).
    async fn close(&self) {
        for slot in &self.confirm_channels {
            let channel = slot.lock().clone();
            if channel.status().connected() {
                let _ = channel.close(200, "closing").await;
            }
        }
        if self.connected() {
            let _ = self.connection.close(200, "closing").await;
        }
    }
}

async fn open_confirm_channel(connection: &Connection) -> Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_error("opening a channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_error("enabling publisher confirms", e))?;
    Ok(channel)
}

/// What the owner of a link does when it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnClose {
    /// Close the connection (publishers, once their confirms are in).
    CloseConnection,
    /// Let go of the connection: it closes once the last channel handle is dropped, so deliveries
    /// handed out before the close can still be settled (subscribers).
    Release,
}

/// A self-healing connection. Clones share it; it closes when [`close`](Self::close) is called or
/// the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Link {
    inner: Arc<LinkInner>,
}

pub(crate) struct LinkInner {
    config: Arc<RabbitConfig>,
    state: watch::Receiver<LinkState>,
    closed: CancellationToken,
    handle: Handle,
}

impl std::ops::Deref for Link {
    type Target = LinkInner;

    fn deref(&self) -> &LinkInner {
        &self.inner
    }
}

impl Link {
    /// Starts the supervisor; it connects in the background. `channels` confirm channels are
    /// opened on each connection. Must be called inside a tokio runtime.
    pub(crate) fn start(config: RabbitConfig, channels: usize, on_close: OnClose) -> Self {
        let config = Arc::new(config);
        let (tx, state) = watch::channel(LinkState::Down(None));
        let closed = CancellationToken::new();
        let handle = Handle::current();
        handle.spawn(supervise(
            config.clone(),
            channels.max(1),
            tx,
            closed.clone(),
            on_close,
        ));
        Self {
            inner: Arc::new(LinkInner {
                config,
                state,
                closed,
                handle,
            }),
        }
    }

    /// Starts the supervisor and waits for the first connection; fails (and stops) if it cannot
    /// be made within the connect timeout.
    pub(crate) async fn connect(
        config: RabbitConfig,
        channels: usize,
        on_close: OnClose,
    ) -> Result<Self> {
        let timeout = config.connect_timeout;
        let link = Self::start(config, channels, on_close);
        let mut state = link.state.clone();
        let first = tokio::time::timeout(timeout, async {
            loop {
                match &*state.borrow_and_update() {
                    LinkState::Up(_) => return Ok(()),
                    LinkState::Down(Some(failure)) => return Err(failure.clone()),
                    LinkState::Closed => return Err(Failure::transient("closed")),
                    LinkState::Down(None) => {}
                }
                if state.changed().await.is_err() {
                    return Err(Failure::transient("the connection supervisor stopped"));
                }
            }
        })
        .await;
        match first {
            Ok(Ok(())) => Ok(link),
            Ok(Err(failure)) => {
                link.closed.cancel();
                let message = format!(
                    "cannot connect to RabbitMQ at {}: {failure}",
                    redact(&link.config.url)
                );
                Err(if failure.permanent {
                    Error::Backend {
                        message,
                        retry: mq_core::Retry::Permanent,
                        source: None,
                    }
                } else {
                    Error::Unavailable {
                        message,
                        source: None,
                    }
                })
            }
            Err(_) => {
                link.closed.cancel();
                Err(Error::Timeout {
                    operation: format!("connecting to RabbitMQ at {}", redact(&link.config.url)),
                    after: timeout,
                })
            }
        }
    }

    pub(crate) fn config(&self) -> &Arc<RabbitConfig> {
        &self.config
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn closed_token(&self) -> &CancellationToken {
        &self.closed
    }

    /// The live session now, or why there is none (fails fast).
    pub(crate) fn session(&self) -> Result<Arc<Session>> {
        match &*self.state.borrow() {
            LinkState::Up(session) if session.connected() => Ok(session.clone()),
            LinkState::Up(_) => Err(Error::Unavailable {
                message: "the connection to RabbitMQ was lost; reconnecting".into(),
                source: None,
            }),
            LinkState::Down(reason) => Err(Error::Unavailable {
                message: match reason {
                    Some(reason) => format!("not connected to RabbitMQ ({reason}); reconnecting"),
                    None => "not connected to RabbitMQ yet".into(),
                },
                source: None,
            }),
            LinkState::Closed => Err(Error::Closed("RabbitMQ connection")),
        }
    }

    /// Declares the queue of consumer group `group` on `topic` over a channel of its own and
    /// returns the queue's name (see [`topology::declare_group_queue`]).
    pub(crate) async fn declare_group(&self, topic: &str, group: &str) -> Result<String> {
        let session = self.session()?;
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| lapin_error("opening a channel", e))?;
        let queue = topology::declare_group_queue(&channel, &session.config, topic, group).await?;
        let _ = channel.close(200, "declared").await;
        Ok(queue)
    }

    /// Waits for a live session (newer than `after`, when given) or the close of the link.
    /// Returns `None` once the link is closed.
    pub(crate) async fn wait_session(&self, after: Option<u64>) -> Option<Arc<Session>> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                LinkState::Up(session)
                    if session.connected() && after.is_none_or(|g| session.generation > g) =>
                {
                    return Some(session.clone());
                }
                LinkState::Closed => return None,
                _ => {}
            }
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return None },
                () = self.closed.cancelled() => return None,
                // A session whose connection died without a state change yet: look again soon.
                () = tokio::time::sleep(STATUS_POLL) => {}
            }
        }
    }

    /// Stops reconnecting and lets the supervisor close or release the connection.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Waits until the supervisor has finished closing.
    pub(crate) async fn closed(&self) {
        let mut state = self.state.clone();
        while !matches!(&*state.borrow_and_update(), LinkState::Closed) {
            if state.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// `amqp://user:password@host` → `amqp://user:***@host`, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn supervise(
    config: Arc<RabbitConfig>,
    channels: usize,
    state: watch::Sender<LinkState>,
    closed: CancellationToken,
    on_close: OnClose,
) {
    let mut failures = 0u32;
    let mut generation = 0u64;
    loop {
        let opened = tokio::select! {
            opened = tokio::time::timeout(
                config.connect_timeout,
                Session::open(config.clone(), generation + 1, channels),
            ) => opened,
            () = closed.cancelled() => break,
        };
        let session = match opened {
            Ok(Ok(session)) => Arc::new(session),
            Ok(Err(error)) => {
                failures += 1;
                state.send_replace(LinkState::Down(Some(Failure {
                    reason: error.to_string(),
                    permanent: !error.is_transient(),
                })));
                debug!(%error, failures, "connecting to RabbitMQ failed");
                if backoff(&config, failures, &closed).await {
                    break;
                }
                continue;
            }
            Err(_) => {
                failures += 1;
                state.send_replace(LinkState::Down(Some(Failure::transient(format!(
                    "no connection within {:?}",
                    config.connect_timeout
                )))));
                if backoff(&config, failures, &closed).await {
                    break;
                }
                continue;
            }
        };
        generation += 1;
        if failures > 0 {
            info!(generation, "reconnected to RabbitMQ");
        }
        state.send_replace(LinkState::Up(session.clone()));
        tokio::select! {
            reason = session.lost() => {
                warn!(%reason, generation, "lost the connection to RabbitMQ; reconnecting");
                state.send_replace(LinkState::Down(Some(Failure::transient(reason))));
                failures = 1;
                if backoff(&config, failures, &closed).await {
                    break;
                }
            }
            () = closed.cancelled() => {
                if on_close == OnClose::CloseConnection {
                    session.close().await;
                }
                break;
            }
        }
    }
    state.send_replace(LinkState::Closed);
}

/// Sleeps before the next attempt; `true` when the link was closed meanwhile.
async fn backoff(config: &RabbitConfig, failures: u32, closed: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(config.reconnect.delay(failures)) => false,
        () = closed.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_with_a_transient_error() {
        let config = RabbitConfig::new("amqp://guest:guest@127.0.0.1:1/%2f")
            .with_connect_timeout(Duration::from_secs(5));
        let error = Link::connect(config, 1, OnClose::CloseConnection)
            .await
            .err()
            .expect("nothing listens on port 1");
        assert!(error.is_transient(), "{error}");
        assert!(!error.to_string().contains("guest:guest"), "{error}");
    }
}
