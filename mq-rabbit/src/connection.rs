//! The connection supervisor: connects, watches for the connection to drop and reconnects with
//! backoff.
//!
//! Every [`RabbitPublisher`](crate::RabbitPublisher) and
//! [`RabbitSubscriber`](crate::RabbitSubscriber) owns one [`Link`]. A [`Session`] is one live
//! AMQP connection; after a reconnect a new session (with a higher generation) replaces it, and
//! channels of the old one are never used again — so a delivery tag of a dead channel is never
//! acked on a new one.

use std::sync::Arc;

use mq_core::{Error, Result};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::lapin_error;
use crate::session::{Session, STATUS_POLL};
use crate::topology;
use crate::RabbitConfig;

/// What a link currently has.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Not connected (yet or any more); the last failure, if any.
    Down(Option<Failure>),
    /// Connected.
    Up(Arc<Session>),
    /// Closed by its owner, and the connection is being closed or released.
    Closing,
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
                    LinkState::Closing | LinkState::Closed => {
                        return Err(Failure::transient("closed"))
                    }
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
            LinkState::Closing | LinkState::Closed => Err(Error::Closed("RabbitMQ connection")),
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
                LinkState::Closing | LinkState::Closed => return None,
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
                // The state lets go of the session first, so that `shutdown` can own it.
                state.send_replace(LinkState::Closing);
                if on_close == OnClose::CloseConnection {
                    session.shutdown().await;
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
    use std::time::Duration;

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
