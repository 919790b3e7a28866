//! [`EnrollStore`] for [`SqlStore`]: see [`crate::enroll`] for the invariants.

use super::SqlStore;
use super::read::{get, opt_time, time};
use super::write::query_error;
use crate::StoreResult;
use crate::enroll::{EnrollStore, Enrollment, IssuedCertificate, NewEnrollment};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

/// The columns [`certificate`] reads, as a macro so statements stay `&'static str`.
macro_rules! cert_columns {
    () => {
        "fingerprint, host, serial, not_before, not_after, issued_at, renewed_from, \
         first_used_at"
    };
}

fn certificate(row: &AnyRow) -> StoreResult<IssuedCertificate> {
    Ok(IssuedCertificate {
        fingerprint: get(row, "fingerprint")?,
        host: get(row, "host")?,
        serial: get(row, "serial")?,
        not_before: time(row, "not_before")?,
        not_after: time(row, "not_after")?,
        issued_at: time(row, "issued_at")?,
        renewed_from: get(row, "renewed_from")?,
        first_used_at: opt_time(row, "first_used_at")?,
    })
}

async fn insert_certificate(
    conn: &mut sqlx::AnyConnection,
    c: &IssuedCertificate,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO certificates (fingerprint, host, serial, not_before, not_after, \
         issued_at, renewed_from, first_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(c.fingerprint.as_str())
    .bind(c.host.as_str())
    .bind(c.serial.as_str())
    .bind(c.not_before.timestamp_millis())
    .bind(c.not_after.timestamp_millis())
    .bind(c.issued_at.timestamp_millis())
    .bind(c.renewed_from.as_deref())
    .bind(c.first_used_at.map(|t| t.timestamp_millis()))
    .execute(conn)
    .await
    .map_err(query_error("insert certificate"))?;
    Ok(())
}

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
        cert: &IssuedCertificate,
    ) -> StoreResult<bool> {
        // One statement decides: of two concurrent callers exactly one sees a row changed;
        // only that one records its certificate, in the same transaction.
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE enrollments SET used_at = $2, cert_fingerprint = $3 \
             WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_sha256)
        .bind(now.timestamp_millis())
        .bind(cert.fingerprint.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_error("use enrollment"))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_certificate(&mut tx, cert).await?;
        tx.commit()
            .await
            .map_err(query_error("commit enrollment"))?;
        Ok(true)
    }

    async fn record_certificate(&self, cert: &IssuedCertificate) -> StoreResult<()> {
        let _gate = self.write_gate().await;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query_error("record certificate"))?;
        insert_certificate(&mut conn, cert).await
    }

    async fn certificates(&self, host: &str) -> StoreResult<Vec<IssuedCertificate>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates WHERE host = $1 ORDER BY issued_at, fingerprint"
        ))
        .bind(host)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read certificates"))?
        .iter()
        .map(certificate)
        .collect()
    }

    async fn renewed_from(&self, fingerprint: &str, max: u32) -> StoreResult<Vec<String>> {
        // One query however long the chain: each step is a primary-key lookup.
        let rows = sqlx::query(
            "WITH RECURSIVE chain (fingerprint, renewed_from, depth) AS ( \
                 SELECT fingerprint, renewed_from, 1 FROM certificates WHERE fingerprint = $1 \
                 UNION ALL \
                 SELECT c.fingerprint, c.renewed_from, chain.depth + 1 \
                 FROM certificates c JOIN chain ON c.fingerprint = chain.renewed_from \
                 WHERE chain.depth < $2 \
             ) \
             SELECT renewed_from FROM chain WHERE renewed_from IS NOT NULL ORDER BY depth",
        )
        .bind(fingerprint)
        .bind(i64::from(max))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read certificate lineage"))?;
        rows.iter().map(|r| get(r, "renewed_from")).collect()
    }

    async fn mark_certificate_used(
        &self,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // Read first: every stream of every agent asks, and after the first time the answer
        // is "already used", which needs neither SQLite's write gate nor a row lock. The
        // UPDATE's own condition keeps the first time when two streams race past the read.
        let used = sqlx::query("SELECT first_used_at FROM certificates WHERE fingerprint = $1")
            .bind(fingerprint)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read certificate use"))?;
        match used {
            None => return Ok(false),
            Some(row) if opt_time(&row, "first_used_at")?.is_some() => return Ok(false),
            Some(_) => {}
        }
        let _gate = self.write_gate().await;
        let done = sqlx::query(
            "UPDATE certificates SET first_used_at = $2 \
             WHERE fingerprint = $1 AND first_used_at IS NULL",
        )
        .bind(fingerprint)
        .bind(at.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(query_error("mark certificate used"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn used_renewal(&self, fingerprint: &str) -> StoreResult<Option<IssuedCertificate>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates \
             WHERE renewed_from = $1 AND first_used_at IS NOT NULL \
             ORDER BY first_used_at, fingerprint LIMIT 1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read used renewal"))?
        .as_ref()
        .map(certificate)
        .transpose()
    }

    async fn superseding(
        &self,
        host: &str,
        fingerprint: &str,
        not_before: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<IssuedCertificate>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates \
             WHERE host = $1 AND fingerprint <> $2 AND first_used_at <= $4 \
               AND issued_at > COALESCE( \
                   (SELECT issued_at FROM certificates WHERE fingerprint = $2), $3) \
             ORDER BY issued_at DESC LIMIT 1"
        ))
        .bind(host)
        .bind(fingerprint)
        .bind(not_before.timestamp_millis())
        .bind(until.timestamp_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read superseding certificate"))?
        .as_ref()
        .map(certificate)
        .transpose()
    }
}
