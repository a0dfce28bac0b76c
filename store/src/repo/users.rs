//! [`UserRepo`] for [`Store`].

use async_trait::async_trait;
use mq_core::domain::{NewUser, RepoError, User, UserRepo};
use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, EntityTrait, Set};

use crate::entities::user;
use crate::error::{kind, repo_err, Kind};
use crate::store::{now, Store};

#[async_trait]
impl UserRepo for Store {
    async fn create_user(&self, new: NewUser) -> Result<User, RepoError> {
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
        let _turn = self.write_turn().await?;
        match row.insert(&self.db).await {
            Ok(model) => Ok(model.into()),
            Err(e) if kind(&e) == Kind::Unique => Err(RepoError::DuplicateMobile(mobile)),
            Err(e) => Err(repo_err(e)),
        }
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, RepoError> {
        let model = user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(model.map(Into::into))
    }
}
