//! [`UserRepo`] for [`Store`].

use async_trait::async_trait;
use mq_core::domain::{Created, IdempotencyKey, NewUser, RepoError, User, UserRepo};
use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, ConnectionTrait, EntityTrait, Set};

use crate::entities::user;
use crate::error::{kind, repo_err, Kind};
use crate::store::{now, Store};

/// Inserts a user on `db` (the pool or a transaction).
async fn insert_user(db: &impl ConnectionTrait, new: NewUser) -> Result<User, RepoError> {
    let now = now();
    let mobile = new.mobile.clone();
    let row = user::ActiveModel {
        id: NotSet,
        name: Set(new.name),
        mobile: Set(new.mobile),
        latitude: Set(new.latitude),
        longitude: Set(new.longitude),
        created_at: Set(now),
        updated_at: Set(now),
    };
    match row.insert(db).await {
        Ok(model) => Ok(model.into()),
        Err(e) if kind(&e) == Kind::Unique => Err(RepoError::DuplicateMobile(mobile)),
        Err(e) => Err(repo_err(e)),
    }
}

#[async_trait]
impl UserRepo for Store {
    async fn create_user(&self, new: NewUser) -> Result<User, RepoError> {
        let _turn = self.write_turn().await?;
        insert_user(&self.db, new).await
    }

    async fn create_user_idempotent(
        &self,
        new: NewUser,
        key: &IdempotencyKey,
    ) -> Result<Created<User>, RepoError> {
        self.create_idempotent(key, |txn| Box::pin(insert_user(txn, new.clone())))
            .await
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, RepoError> {
        let model = user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(model.map(Into::into))
    }
}
