//! The conformance kit: scenarios every broker backend must pass.
//!
//! Each scenario is a public async function taking a [`BackendFactory`] and the backend's
//! [`Capabilities`]; scenarios that need a capability the backend lacks print why and return.
//! Every scenario uses topic and group names of its own (with a random suffix), so scenarios run in
//! parallel against one broker. A backend runs them all with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//! use mq_core::testkit::{BackendFactory, Capabilities};
//! use mq_core::{MemoryBroker, Publisher, Subscriber};
//!
//! struct Memory(MemoryBroker);
//!
//! #[async_trait::async_trait]
//! impl BackendFactory for Memory {
//!     async fn publisher(&self) -> Arc<dyn Publisher> { Arc::new(self.0.publisher()) }
//!     async fn subscriber(&self) -> Arc<dyn Subscriber> { Arc::new(self.0.subscriber()) }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let caps = Capabilities { restartable: false, ..Capabilities::default() };
//! mq_core::testkit::round_trip(&Memory(MemoryBroker::new()), &caps).await;
//! # }
//! ```
//!
//! In a backend's `tests/conformance.rs`: `mq_core::conformance_tests!(async { Some(factory) }, caps);`
//! where the first expression yields `None` (after printing why) when the broker is not reachable.

mod basics;
mod dead_letters;
mod groups;
mod helpers;
mod lifecycle;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Publisher, Subscriber};

pub use basics::*;
pub use dead_letters::*;
pub use groups::*;
pub use helpers::*;
pub use lifecycle::*;
pub use worker::*;

/// What a backend can do; scenarios that need more are skipped with a printed reason.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Un-acked messages survive their subscriber: a new subscriber of the group gets them.
    pub persistent: bool,
    /// Messages with the same key are delivered in publish order.
    pub ordered_per_key: bool,
    /// Consumer groups: competing consumers inside a group, fan-out across groups.
    pub consumer_groups: bool,
    /// [`BackendFactory::restart_broker`] works, so the reconnect scenario can run.
    pub restartable: bool,
    /// How long a scenario waits for an expected message before failing.
    pub receive_timeout: Duration,
    /// How long a scenario waits to be sure that an unexpected message does not arrive.
    pub quiet_period: Duration,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            persistent: true,
            ordered_per_key: true,
            consumer_groups: true,
            restartable: false,
            receive_timeout: Duration::from_secs(30),
            quiet_period: Duration::from_millis(500),
        }
    }
}

/// Creates publishers and subscribers of the backend under test.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// A new publisher (its own connection where the backend has connections).
    async fn publisher(&self) -> Arc<dyn Publisher>;

    /// A new subscriber (its own connection where the backend has connections).
    async fn subscriber(&self) -> Arc<dyn Subscriber>;

    /// Restarts the broker or forcibly closes every client connection, and returns once the
    /// broker accepts connections again. Only called when [`Capabilities::restartable`] is set.
    async fn restart_broker(&self) {
        panic!("restart_broker is not implemented; set Capabilities::restartable to false");
    }
}

/// Every scenario name, in the order [`conformance_tests!`](crate::conformance_tests) runs them.
pub const SCENARIOS: &[&str] = crate::conformance_tests!(@list names ());

/// Generates one `#[tokio::test]` per scenario, on the multi-threaded runtime (the calling crate
/// needs tokio with the `macros` and `rt-multi-thread` features).
///
/// `$factory` is an async expression yielding `Option<impl BackendFactory>` (`None` skips the
/// scenario, e.g. when the broker is not running and services are not required); `$caps` is an
/// expression yielding [`Capabilities`].
///
/// The list of scenarios is here and only here: [`SCENARIOS`] is made from it, and each name must
/// be a function of [`testkit`](crate::testkit) or the tests do not compile.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, $caps:expr) => {
        $crate::conformance_tests!(@list tests ($factory, $caps));
    };
    // The one list of scenarios, handed to the mode that asked for it.
    (@list $mode:ident $args:tt) => {
        // Braces: the expansion is items in one mode and an expression in the other.
        $crate::conformance_tests! { @$mode $args;
            round_trip, concurrent_publishers_and_subscribers, many_topics, redelivery_after_nack,
            dropped_delivery_is_redelivered, resume_after_subscriber_close, concurrent_close,
            continue_after_handler_errors, order_per_key, publisher_close_flushes, topic_isolation,
            consumer_groups_fan_out, consumer_group_splits_work, dead_letter, worker_dead_letters,
            dead_letters_redrive, reconnect_after_restart, unrouted_events_publish
        }
    };
    (@names (); $($scenario:ident),* $(,)?) => {
        &[$(stringify!($scenario)),*]
    };
    (@tests ($factory:expr, $caps:expr); $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                if let Some(factory) = $factory.await {
                    $crate::testkit::$scenario(&factory, &$caps).await;
                }
            }
        )*
    };
}
