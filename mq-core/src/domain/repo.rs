use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Created, IdempotencyKey, NewProduct, NewUser, OutboxBacklog, OutboxMessage, Page,
    ProcessingResult, Product, ProductChange, ProductFilter, ProductStatus, Recorded, User,
    UserFilter, UserPatch,
};

/// Errors from the repositories, distinct where callers react differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// The referenced user does not exist (foreign key). The API answers 422.
    #[error("user {0} does not exist")]
    UnknownUser(i64),
    /// Another user already has this mobile number (unique). The API answers 409.
    #[error("a user with mobile number {0} already exists")]
    DuplicateMobile(String),
    /// The idempotency key was already used for a different request. The API answers 422.
    #[error("idempotency key `{0}` was already used for a different request")]
    IdempotencyKeyReused(String),
    /// The write was conditional on a version (`If-Match`) that is no longer the row's. The API
    /// answers 412.
    #[error("{entity} {id} is at version {current}, not {expected}; read it again and retry")]
    VersionMismatch {
        /// `"product"`.
        entity: &'static str,
        /// The row.
        id: i64,
        /// The version the caller expected.
        expected: i64,
        /// The row's version now.
        current: i64,
    },
    /// The user still owns products, so it cannot be deleted. The API answers 409.
    #[error("user {0} still has products; delete them first")]
    UserHasProducts(i64),
    /// The row does not exist. The API answers 404.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `"user"`, `"product"`, ...
        entity: &'static str,
        /// The id that was looked up.
        id: i64,
    },
    /// The database cannot be reached or is overloaded; retry later. The API answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema mismatch. The API answers 500.
    #[error("database error: {0}")]
    Other(String),
}

impl RepoError {
    /// `true` when retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RepoError::Unavailable(_))
    }
}

/// Users.
///
/// Implemented by `product_pipeline_store::Store`; with the `mock` feature, `MockUserRepo` lets
/// you unit-test code that takes `&dyn UserRepo`:
///
/// ```
/// # #[cfg(feature = "mock")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mq_core::domain::{MockUserRepo, RepoError, UserRepo};
///
/// async fn name_of(users: &dyn UserRepo, id: i64) -> Result<String, RepoError> {
///     let user = users.get_user(id).await?;
///     user.map(|u| u.name).ok_or(RepoError::NotFound { entity: "user", id })
/// }
///
/// let mut users = MockUserRepo::new();
/// users.expect_get_user().returning(|_| Ok(None));
/// assert_eq!(
///     name_of(&users, 7).await,
///     Err(RepoError::NotFound { entity: "user", id: 7 })
/// );
/// # }
/// # #[cfg(not(feature = "mock"))] fn main() {}
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Inserts a user. Fails with [`RepoError::DuplicateMobile`] when the mobile is taken.
    async fn create_user(&self, user: NewUser) -> Result<User, RepoError>;

    /// [`create_user`](Self::create_user) at most once per unexpired `key`: a call whose key is
    /// stored with the same fingerprint returns the user that call created, as it was then, and
    /// inserts nothing; a different fingerprint fails with [`RepoError::IdempotencyKeyReused`].
    /// The key is stored in the transaction that inserts the user. Keys of users and products are
    /// separate.
    async fn create_user_idempotent(
        &self,
        user: NewUser,
        key: &IdempotencyKey,
    ) -> Result<Created<User>, RepoError>;

    /// One user, `None` when missing.
    async fn get_user(&self, id: i64) -> Result<Option<User>, RepoError>;

    /// A page of users, ordered by id.
    async fn list_users(&self, filter: &UserFilter) -> Result<Page<User>, RepoError>;

    /// Changes a user's fields and returns the user as stored. Fails with
    /// [`RepoError::NotFound`], or [`RepoError::DuplicateMobile`] when another user has the new
    /// mobile; nothing changes then.
    async fn update_user(&self, id: i64, patch: UserPatch) -> Result<User, RepoError>;

    /// Deletes a user. Fails with [`RepoError::UserHasProducts`] while it owns products, and with
    /// [`RepoError::NotFound`] when missing.
    async fn delete_user(&self, id: i64) -> Result<(), RepoError>;
}

/// Products, as the API and the image consumer need them.
///
/// Implemented by `product_pipeline_store::Store`. A retried request is made safe with an
/// [`IdempotencyKey`]; with the `mock` feature, `MockProductRepo` stands in for the database:
///
/// ```
/// # #[cfg(feature = "mock")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mq_core::domain::RepoError> {
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use mq_core::domain::{Created, IdempotencyKey, MockProductRepo, NewProduct, ProductRepo};
///
/// let mut products = MockProductRepo::new();
/// products
///     .expect_create_product_idempotent()
///     .returning(|_, _, _| Err(mq_core::domain::RepoError::Unavailable("down".into())));
///
/// let new = NewProduct {
///     user_id: 1,
///     product_name: "Lamp".into(),
///     product_description: None,
///     product_images: vec!["https://images.example.com/lamp.jpg".into()],
///     product_price: "19.99".parse().unwrap(),
/// };
/// let key = IdempotencyKey {
///     key: "7c1e…".into(),
///     fingerprint: "sha256 of the request".into(),
///     ttl: Duration::from_secs(86_400),
/// };
/// let error = products
///     .create_product_idempotent(new, BTreeMap::new(), &key)
///     .await
///     .unwrap_err();
/// assert!(error.is_transient(), "a 503: the client retries with the same key");
/// # Ok(()) }
/// # #[cfg(not(feature = "mock"))] fn main() {}
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ProductRepo: Send + Sync {
    /// Inserts a `pending` product and, in the same transaction, its `products.created` outbox row
    /// (key and payload carry the new id; `headers` carry e.g. the trace context). Nothing is
    /// stored when either insert fails. Fails with [`RepoError::UnknownUser`] for a missing user.
    async fn create_product(
        &self,
        product: NewProduct,
        headers: BTreeMap<String, String>,
    ) -> Result<Product, RepoError>;

    /// [`create_product`](Self::create_product) at most once per unexpired `key`, with the same
    /// rules as [`UserRepo::create_user_idempotent`]. A replay writes no outbox row.
    async fn create_product_idempotent(
        &self,
        product: NewProduct,
        headers: BTreeMap<String, String>,
        key: &IdempotencyKey,
    ) -> Result<Created<Product>, RepoError>;

    /// Updates, reprocesses or deletes product `id` and, in the same transaction, writes its
    /// outbox row (`products.updated` or `products.deleted`, carrying the new version; `headers`
    /// as for [`create_product`](Self::create_product)). Returns the product as stored after the
    /// change (for a delete, as it was, with the version the delete announced).
    ///
    /// - `if_version`: only when the row is at this version, else [`RepoError::VersionMismatch`].
    /// - Every change adds 1 to the version, except an update that changes no field, which
    ///   writes nothing. Changing `product_images`, or reprocessing, sets status `pending`; the
    ///   previous result stays on the row until the new one is recorded.
    /// - `key`: at most once per unexpired key, as for
    ///   [`create_product_idempotent`](Self::create_product_idempotent) (keys are shared with
    ///   creates; the fingerprint tells the requests apart).
    ///
    /// Fails with [`RepoError::NotFound`] when the row is missing; nothing changes then.
    async fn change_product(
        &self,
        id: i64,
        change: ProductChange,
        if_version: Option<i64>,
        headers: BTreeMap<String, String>,
        key: Option<IdempotencyKey>,
    ) -> Result<Created<Product>, RepoError>;

    /// One product, `None` when missing.
    async fn get_product(&self, id: i64) -> Result<Option<Product>, RepoError>;

    /// A page of products matching `filter`, ordered by id.
    async fn list_products(&self, filter: &ProductFilter) -> Result<Page<Product>, RepoError>;

    /// Sets a `pending` product to `processing` and returns it, when it is at `version` (any
    /// version when `None`). A product at another version, already `processing`, or with a
    /// final status is returned unchanged; `None` when missing.
    async fn mark_processing(
        &self,
        id: i64,
        version: Option<i64>,
    ) -> Result<Option<Product>, RepoError>;

    /// Records the consumer's result for `version` of product `id` (paths, status and image
    /// errors) and, in the same transaction, its `products.processed` outbox row, only while the
    /// row is still at `version` without a final status: the first result of a version is its
    /// result. Recording the same result again changes nothing and writes no second event
    /// ([`Recorded::Unchanged`]); a row that moved to another version, was deleted or holds
    /// another result gets [`Recorded::Superseded`].
    async fn record_result(
        &self,
        id: i64,
        version: i64,
        result: &ProcessingResult,
    ) -> Result<Recorded, RepoError>;

    /// How many products have each status; every status is listed, with 0 where none has it.
    async fn count_by_status(&self) -> Result<Vec<(ProductStatus, u64)>, RepoError>;

    /// Checks that the database answers (used by readiness probes).
    async fn ping(&self) -> Result<(), RepoError>;
}

/// The transactional outbox, as the relay needs it.
///
/// Implemented by `product_pipeline_store::Store`. A relay round claims rows, publishes them and
/// marks only the confirmed ones:
///
/// ```
/// # #[cfg(feature = "mock")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mq_core::domain::RepoError> {
/// use std::time::Duration;
/// use mq_core::domain::{MockOutboxRepo, OutboxRepo};
/// use mq_core::{MemoryBroker, Publisher};
///
/// let mut outbox = MockOutboxRepo::new();
/// outbox.expect_claim_outbox().returning(|_, _| Ok(vec![]));
/// let publisher = MemoryBroker::new().publisher();
///
/// let rows = outbox.claim_outbox(100, Duration::from_secs(30)).await?;
/// let mut published = Vec::new();
/// for row in &rows {
///     if publisher.publish(&row.topic, row.to_message()).await.is_ok() {
///         published.push(row.id);
///     }
/// }
/// if !published.is_empty() {
///     outbox.mark_published(&published).await?;
/// }
/// # Ok(()) }
/// # #[cfg(not(feature = "mock"))] fn main() {}
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OutboxRepo: Send + Sync {
    /// Claims up to `limit` unpublished rows, oldest first, for `lease`: until the lease ends no
    /// other relay claims them. Safe to call from several relays at once.
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, RepoError>;

    /// Marks rows published once the broker has confirmed them. Idempotent.
    async fn mark_published(&self, ids: &[i64]) -> Result<(), RepoError>;

    /// Records a failed publish: increments the attempt count, keeps the error, releases the lease.
    async fn record_publish_failure(&self, id: i64, error: &str) -> Result<(), RepoError>;

    /// The number of unpublished rows and the age of the oldest, whether claimed or not.
    async fn outbox_backlog(&self) -> Result<OutboxBacklog, RepoError>;

    /// Deletes up to `limit` rows published before `published_before`, the earliest published
    /// first, and returns how many it deleted. Rows not yet published are never deleted, however
    /// old. Safe to call from several processes at once and next to the relay.
    async fn delete_published(
        &self,
        published_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepoError>;
}
