//! [`EnrollStore`] for [`SqlStore`]: see [`crate::store::enroll`] for the invariants.

use super::SqlStore;
use super::read::{get, opt_time, time};
use super::write::query_error;
use crate::store::StoreResult;
use crate::store::enroll::{EnrollStore, Enrollment, NewEnrollment};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl EnrollStore for SqlStore {
    async fn add_enrollment(&self, e: &NewEnrollment) -> StoreResult<()> {
        let _gate = self.write_gate().await;
        sqlx::query(
            "INSERT INTO enrollments (token_sha256, host, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(e.token_sha256.as_str())
        .bind(e.host.as_str())
        .bind(e.created_by.as_str())
        .bind(e.created_at.timestamp_millis())
        .bind(e.expires_at.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(query_error("insert enrollment"))?;
        Ok(())
    }

    async fn enrollment(&self, token_sha256: &str) -> StoreResult<Option<Enrollment>> {
        let row = sqlx::query(
            "SELECT host, created_by, created_at, expires_at, used_at, cert_fingerprint \
             FROM enrollments WHERE token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read enrollment"))?;
        row.map(|row| {
            Ok(Enrollment {
                host: get(&row, "host")?,
                created_by: get(&row, "created_by")?,
                created_at: time(&row, "created_at")?,
                expires_at: time(&row, "expires_at")?,
                used_at: opt_time(&row, "used_at")?,
                cert_fingerprint: get(&row, "cert_fingerprint")?,
            })
        })
        .transpose()
    }

    async fn use_enrollment(
        &self,
        token_sha256: &str,
        now: DateTime<Utc>,
        cert_fingerprint: &str,
    ) -> StoreResult<bool> {
        // One statement decides: of two concurrent callers exactly one sees a row changed.
        let _gate = self.write_gate().await;
        let done = sqlx::query(
            "UPDATE enrollments SET used_at = $2, cert_fingerprint = $3 \
             WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_sha256)
        .bind(now.timestamp_millis())
        .bind(cert_fingerprint)
        .execute(&self.pool)
        .await
        .map_err(query_error("use enrollment"))?;
        Ok(done.rows_affected() == 1)
    }
}
