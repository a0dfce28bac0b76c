//! A start in progress: the HTTP address bound first, the dependencies awaited, then the API, the
//! outbox relay and the image worker spawned.

use std::net::SocketAddr;
use std::sync::Arc;

use mq_core::worker::{Worker, WorkerConfig};
use mq_core::{Publisher, Subscriber};
use product_pipeline_imaging::media::MediaStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::parts;
use super::running::{Roles, Running};
use crate::api::{self, AppState, Front};
use crate::config::Config;
use crate::consumer::ImageConsumer;
use crate::outbox_retention::{OutboxRetention, RetentionConfig};
use crate::relay::{OutboxRelay, RelayConfig};
use crate::startup::{Dependency, StartupError, StartupWait};

/// A start in progress: the HTTP address is bound and served by a [`Front`] that answers
/// `/healthz` while the dependencies are awaited. Dropping it (start-up failed) closes the
/// listener.
pub(super) struct Starting {
    tasks: JoinSet<()>,
    front: Option<(Front, SocketAddr)>,
    pub(super) wait: StartupWait,
}

impl Starting {
    /// Binds the address this process serves, if any: `HTTP_ADDR` for the API, `METRICS_ADDR`
    /// for a worker-only process that has one.
    pub(super) async fn begin(
        config: &Config,
        roles: Roles,
        shutdown: &CancellationToken,
    ) -> Result<Starting, StartupError> {
        let mut tasks = JoinSet::new();
        let mut wait = StartupWait::new(config.startup_wait(), shutdown.clone());
        let addr = match (roles.api, roles.worker, config.metrics_addr) {
            (true, _, _) => Some((config.http_addr, "HTTP_ADDR")),
            (false, true, Some(addr)) => Some((addr, "METRICS_ADDR")),
            _ => None,
        };
        let mut front = None;
        if let Some((addr, setting)) = addr {
            let served = Front::new();
            let limits = config
                .connection_limits(crate::server::descriptor_limit())
                .map_err(|(setting, reason)| StartupError::Config { setting, reason })?;
            let grace = config.shutdown_grace();
            let addr = serve(
                served.router(),
                addr,
                setting,
                limits,
                grace,
                &mut tasks,
                shutdown,
            )
            .await?;
            wait = wait.reporting_to(served.clone());
            front = Some((served, addr));
        }
        Ok(Starting { tasks, front, wait })
    }

    /// [`open_media`](parts::open_media), waiting for a store that is not reachable yet.
    pub(super) async fn open_media(&self, config: &Config) -> Result<MediaStore, StartupError> {
        self.wait
            .until_up(Dependency::Media, || parts::open_media(config))
            .await
    }

    /// Opens the database (waiting for it), then starts the parts `roles` selects and hands the
    /// front its real router.
    pub(super) async fn finish(
        mut self,
        config: &Config,
        roles: Roles,
        publisher: Arc<dyn Publisher>,
        subscriber: Arc<dyn Subscriber>,
        media: MediaStore,
        shutdown: CancellationToken,
    ) -> Result<Running, StartupError> {
        let store = self
            .wait
            .until_up(Dependency::Database, || parts::open_store(config))
            .await?;
        let tasks = &mut self.tasks;
        if let Some((front, _)) = &self.front {
            if roles.api {
                let relay_config = RelayConfig {
                    topic_prefix: config.topic_prefix.clone(),
                    messaging_system: config.broker.messaging_system(),
                    ..RelayConfig::default()
                };
                let relay =
                    OutboxRelay::new(Arc::new(store.clone()), publisher.clone(), relay_config);
                let state = AppState {
                    outbox_wakeup: relay.wakeup(),
                    ..parts::app_state(config, &store, &publisher, &media)?
                };
                tasks.spawn(relay.run(shutdown.clone()));
                let retention = RetentionConfig {
                    retention: config.outbox_retention(),
                    ..RetentionConfig::default()
                };
                let retention = OutboxRetention::new(Arc::new(store.clone()), retention);
                tasks.spawn(retention.run(shutdown.clone()));
                front.open(api::router(state));
            } else {
                let state = parts::app_state(config, &store, &publisher, &media)?;
                front.open(api::operations_router(state));
            }
        }

        if roles.worker {
            spawn_worker(config, store, subscriber.clone(), media, tasks, &shutdown)?;
        }

        Ok(Running {
            http_addr: self.front.map(|(_, addr)| addr),
            tasks: self.tasks,
            publisher,
            subscriber,
        })
    }
}

/// Starts the image workers on `subscriber`, one per product event topic, sharing one consumer
/// (and so one memory bound and CPU pool); each cancels `shutdown` if it stops with an error.
fn spawn_worker(
    config: &Config,
    store: product_pipeline_store::Store,
    subscriber: Arc<dyn Subscriber>,
    media: MediaStore,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), StartupError> {
    let images = product_pipeline_imaging::Imaging::new(parts::imaging_config(config), media)
        .map_err(parts::imaging_error)?;
    let consumer = ImageConsumer::new(Arc::new(store), Arc::new(images));
    for topic in config.product_event_topics() {
        let worker = Worker::new(
            subscriber.clone(),
            topic.clone(),
            &config.consumer_group,
            consumer.clone(),
        )
        .with_config(WorkerConfig {
            concurrency: config.worker_concurrency as usize,
            max_attempts: config.worker_max_attempts,
            shutdown_timeout: config.shutdown_grace(),
            ..WorkerConfig::default()
        });
        let stop = shutdown.clone();
        tasks.spawn(async move {
            info!(%topic, "image worker running");
            match worker.run(stop.clone()).await {
                Err(error) => {
                    warn!(%topic, %error, "an image worker stopped with an error");
                    stop.cancel();
                }
                // The subscription ended by itself: without stopping, the process would stay up
                // with no worker on this topic. It stops, so that a supervisor restarts it.
                Ok(()) if !stop.is_cancelled() => {
                    warn!(%topic, "an image worker's subscription ended; stopping");
                    stop.cancel();
                }
                Ok(()) => {}
            }
        });
    }
    Ok(())
}

/// Binds `addr` (the `setting` that names it, for the error) and serves `app` there until
/// `shutdown`, then for up to `grace` more; returns the bound address.
async fn serve(
    app: axum::Router,
    addr: SocketAddr,
    setting: &'static str,
    limits: crate::server::ConnectionLimits,
    grace: std::time::Duration,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<SocketAddr, StartupError> {
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| StartupError::Config {
                setting,
                reason: format!("cannot listen on {addr}: {error}"),
            })?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tasks.spawn(async move {
        info!(%addr, "HTTP listening");
        crate::server::serve(listener, app, limits, stop, grace).await;
    });
    Ok(addr)
}
