//! A PostgreSQL schema that exists for one test (feature `postgres`).

use sea_orm::{ConnectionTrait, Database};

use crate::names::unique_name;

/// A schema on the server at `url` that is dropped (`CASCADE`) when this is: by
/// [`drop_now`](Self::drop_now) where the test can await it, else on drop, also when the test
/// panics.
#[derive(Debug)]
pub struct PgSchema {
    url: String,
    name: String,
    /// Already dropped, or to be left alone.
    dropped: bool,
}

impl PgSchema {
    /// Creates a fresh schema, named `prefix` plus a [`unique_name`] suffix.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses: a test with `DATABASE_URL` set needs it.
    pub async fn create(url: &str, prefix: &str) -> PgSchema {
        let schema = PgSchema::named(url, prefix);
        execute(url, &format!("CREATE SCHEMA \"{}\"", schema.name))
            .await
            .unwrap_or_else(|error| panic!("creating schema {}: {error}", schema.name));
        schema
    }

    /// A fresh name for a schema that something else creates (say, the store on its first
    /// connect); it is dropped like one [`create`](Self::create) made, if it exists by then.
    pub fn named(url: &str, prefix: &str) -> PgSchema {
        PgSchema {
            url: url.to_owned(),
            name: unique_name(prefix),
            dropped: false,
        }
    }

    /// The schema's name (unquoted).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the schema now; a failure is printed, not raised (the test's outcome is what
    /// counts).
    pub async fn drop_now(mut self) {
        self.dropped = true;
        drop_schema(&self.url, &self.name).await;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (url, name) = (self.url.clone(), self.name.clone());
        // On a thread of its own with a runtime of its own: `drop` cannot await, and it may run
        // inside a runtime (which cannot block) or outside one.
        let _ = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(drop_schema(&url, &name)),
                Err(error) => eprintln!("could not drop schema {name}: {error}"),
            }
        })
        .join();
    }
}

async fn drop_schema(url: &str, name: &str) {
    if let Err(error) = execute(url, &format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).await {
        eprintln!("could not drop schema {name}: {error}");
    }
}

async fn execute(url: &str, sql: &str) -> Result<(), sea_orm::DbErr> {
    let admin = Database::connect(url).await?;
    let result = admin.execute_unprepared(sql).await.map(drop);
    let _ = admin.close().await;
    result
}
