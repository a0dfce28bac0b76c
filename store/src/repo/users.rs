//! [`UserRepo`] for [`Store`].

use async_trait::async_trait;
use mq_core::domain::{
    Created, IdempotencyKey, NewUser, Page, RepoError, User, UserFilter, UserPatch, UserRepo,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::entities::user;
use crate::error::{kind, repo_err, Kind};
use crate::store::{now, Store};

/// Largest page [`UserRepo::list_users`] returns.
const MAX_PAGE: u32 = 100;

fn not_found(id: i64) -> RepoError {
    RepoError::NotFound { entity: "user", id }
}

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

    async fn list_users(&self, filter: &UserFilter) -> Result<Page<User>, RepoError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut query = user::Entity::find();
        if let Some(after) = filter.after {
            query = query.filter(user::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(user::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        super::keyset_page(rows, limit, |row| row.id, |row| Ok(row.into()))
    }

    async fn update_user(&self, id: i64, patch: UserPatch) -> Result<User, RepoError> {
        let _turn = self.write_turn().await?;
        let row = user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .ok_or_else(|| not_found(id))?;
        let mobile = patch.mobile.clone();
        let mut changed = row.clone().into_active_model();
        // Only fields whose value differs: a patch that changes nothing writes nothing and keeps
        // `updated_at`.
        if let Some(name) = patch.name.filter(|name| *name != row.name) {
            changed.name = Set(name);
        }
        if let Some(mobile) = patch.mobile.filter(|mobile| *mobile != row.mobile) {
            changed.mobile = Set(mobile);
        }
        if let Some(latitude) = patch.latitude.filter(|l| *l != row.latitude) {
            changed.latitude = Set(latitude);
        }
        if let Some(longitude) = patch.longitude.filter(|l| *l != row.longitude) {
            changed.longitude = Set(longitude);
        }
        if !changed.is_changed() {
            return Ok(row.into());
        }
        let mut row = changed;
        row.updated_at = Set(now());
        match row.update(&self.db).await {
            Ok(model) => Ok(model.into()),
            Err(e) if kind(&e) == Kind::Unique => {
                Err(RepoError::DuplicateMobile(mobile.unwrap_or_default()))
            }
            Err(sea_orm::DbErr::RecordNotUpdated) => Err(not_found(id)),
            Err(e) => Err(repo_err(e)),
        }
    }

    async fn delete_user(&self, id: i64) -> Result<(), RepoError> {
        let _turn = self.write_turn().await?;
        match user::Entity::delete_by_id(id).exec(&self.db).await {
            Ok(done) if done.rows_affected == 0 => Err(not_found(id)),
            Ok(_) => Ok(()),
            Err(e) if kind(&e) == Kind::ForeignKey => Err(RepoError::UserHasProducts(id)),
            Err(e) => Err(repo_err(e)),
        }
    }
}
