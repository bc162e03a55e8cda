//! The PostgreSQL pool and the migrations embedded in the binary (`kiln-server migrate`).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// The schema, in `server/migrations/`, applied in order and recorded in `_sqlx_migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connections per process: enough for two cores' worth of handlers plus the background loops,
/// few enough that several server processes fit PostgreSQL's default of 100.
const MAX_CONNECTIONS: u32 = 16;

/// A request waits this long for a connection before answering 503 rather than hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect(database_url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT).connect(database_url).await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
