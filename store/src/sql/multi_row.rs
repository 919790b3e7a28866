//! Multi-row statements: one `VALUES (…), (…), …` statement for many rows, so the number of
//! statements a group write runs does not grow with the number of results in it.
//!
//! Invariants:
//! - a statement is written for one row (`… VALUES ($1, …, $k) …`, as the files in
//!   `queries/` are) and sent for many: its first `VALUES (…)` tuple is repeated with the
//!   placeholders renumbered (`$1` of the second row is `$k+1`), whatever else the tuple holds
//!   (casts stay); the rest of the statement holds no placeholders;
//! - a statement takes a power-of-two number of rows, at most [`MAX_ROWS`]; `n` rows go as
//!   the binary decomposition of `n` ([`chunks`]), largest first. So each statement has at
//!   most 9 spellings, each prepared once per connection and kept in sqlx's statement cache,
//!   and `n` rows cost at most `8 + n / 256` statements;
//! - on SQLite the placeholders are anonymous (`?`) wherever the tuple takes its parameters
//!   once each and in order, as all but `touch_host` do ([`Placeholders`]): sqlx asks SQLite
//!   for the name of every parameter it binds (`sqlite3_bind_parameter_name`), and SQLite
//!   finds a name by walking the list of all of them, so binding named parameters costs the
//!   square of their number. 8,192 `$n` (256 rollup rows) took tens of milliseconds of CPU
//!   per statement; even capped at 256 it was a tenth of the collector's CPU under load.
//!   An anonymous parameter has no name to look up;
//! - on SQLite a statement carries at most [`SQLITE_MAX_PARAMS`] parameters (fewer rows for
//!   wide tables). The 64 multi-row spellings share sqlx's statement cache (100 per
//!   connection, fixed through `Any`) with the other queries, and a spelling evicted from it
//!   is prepared again when next used: the cap keeps that cheap;
//! - key lists for reads ([`MultiRow::fetch_keys`]) are padded up to a power of two with their
//!   last key instead, one statement per 256 keys; callers drop the repeated rows;
//! - the texts are built once and live for the process (sqlx takes a `&'static str` as safe
//!   SQL without `AssertSqlSafe`); the widest (rollups: 32 columns × 256 rows) stays far
//!   below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
//!
//! Why `VALUES` lists rather than arrays (`UNNEST($1::text[], …)`) or one JSON parameter: sqlx's
//! `Any` driver binds no arrays, and the same plain SQL then serves both backends.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use std::sync::OnceLock;

/// Most rows in one statement.
pub(super) const MAX_ROWS: usize = 256;
/// Spellings per statement: 1, 2, 4, …, 256 rows.
const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;
/// Most parameters in one SQLite statement (see the module invariants).
const SQLITE_MAX_PARAMS: usize = 1024;

/// How a statement's text spells its placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    /// `$1, $2, …` renumbered from row to row: PostgreSQL (and SQLite for a tuple that uses a
    /// parameter twice or out of order).
    Numbered,
    /// `?` each: SQLite, where binding one costs nothing (see the module invariants).
    Anonymous,
}

impl Placeholders {
    fn of(conn: &AnyConnection) -> Placeholders {
        if is_sqlite(conn) {
            Placeholders::Anonymous
        } else {
            Placeholders::Numbered
        }
    }
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

pub(super) type AnyQuery = Query<'static, Any, AnyArguments>;

/// A one-row statement sent for many rows (see the module invariants).
pub(super) struct MultiRow {
    template: &'static str,
    texts: [OnceLock<String>; SIZES],
    sqlite_texts: [OnceLock<String>; SIZES],
    /// Placeholders per row, counted once.
    columns: OnceLock<usize>,
}

impl MultiRow {
    pub(super) const fn new(template: &'static str) -> Self {
        MultiRow {
            template,
            texts: [const { OnceLock::new() }; SIZES],
            sqlite_texts: [const { OnceLock::new() }; SIZES],
            columns: OnceLock::new(),
        }
    }

    /// The statement for `rows` rows; `rows` is a power of two up to [`MAX_ROWS`].
    pub(super) fn sql(&'static self, rows: usize, spelling: Placeholders) -> &'static str {
        debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS);
        let index = (rows.trailing_zeros() as usize).min(SIZES - 1);
        let texts = match spelling {
            Placeholders::Numbered => &self.texts,
            Placeholders::Anonymous => &self.sqlite_texts,
        };
        texts[index].get_or_init(|| repeat_tuple(self.template, 1 << index, spelling))
    }

    /// Most rows in one statement on `conn`'s database: a power of two.
    fn max_rows(&self, conn: &AnyConnection) -> usize {
        if !is_sqlite(conn) {
            return MAX_ROWS;
        }
        let columns = self.columns().max(1);
        let fit = (SQLITE_MAX_PARAMS / columns).clamp(1, MAX_ROWS);
        // The largest power of two not above `fit`.
        1 << fit.ilog2()
    }

    /// Placeholders per row.
    fn columns(&self) -> usize {
        *self.columns.get_or_init(|| {
            let (open, close) = tuple_span(self.template);
            placeholders(&self.template[open..close]).max().unwrap_or(0)
        })
    }

    /// The statements that take `rows`, each with its rows bound, in order (see [`chunks`]).
    fn statements<'r, T>(
        &'static self,
        conn: &AnyConnection,
        rows: &'r [T],
        bind: &'r impl Fn(AnyQuery, &T) -> AnyQuery,
    ) -> impl Iterator<Item = AnyQuery> + 'r {
        let mut start = 0;
        let spelling = Placeholders::of(conn);
        chunks(rows.len(), self.max_rows(conn)).map(move |size| {
            let part = &rows[start..start + size];
            start += size;
            part.iter()
                .fold(sqlx::query(self.sql(size, spelling)), bind)
        })
    }

    /// Runs the statement over `rows` in as few statements as [`chunks`] allows, binding each
    /// row with `bind`, and returns what the statements returned (`RETURNING`), in order.
    pub(super) async fn fetch<T>(
        &'static self,
        conn: &mut AnyConnection,
        rows: &[T],
        bind: impl Fn(AnyQuery, &T) -> AnyQuery,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut out = Vec::new();
        for query in self.statements(conn, rows, &bind) {
            out.extend(query.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }

    /// [`MultiRow::fetch`] for statements that return nothing.
    pub(super) async fn execute<T>(
        &'static self,
        conn: &mut AnyConnection,
        rows: &[T],
        bind: impl Fn(AnyQuery, &T) -> AnyQuery,
    ) -> Result<(), sqlx::Error> {
        for query in self.statements(conn, rows, &bind) {
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// A read over a list of keys: one statement per [`MAX_ROWS`] keys (fewer on SQLite), the
    /// last list padded with its last key (a key repeated finds the same rows again: callers
    /// keep one copy).
    pub(super) async fn fetch_keys<T>(
        &'static self,
        conn: &mut AnyConnection,
        keys: &[T],
        bind: impl Fn(AnyQuery, &T) -> AnyQuery,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut out = Vec::new();
        let spelling = Placeholders::of(conn);
        for part in keys.chunks(self.max_rows(conn)) {
            let size = part.len().next_power_of_two();
            let mut query = sqlx::query(self.sql(size, spelling));
            for i in 0..size {
                query = bind(query, &part[i.min(part.len() - 1)]);
            }
            out.extend(query.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }
}

/// Where the first `VALUES (…)` tuple of `template` starts and ends (byte offsets, the
/// parentheses included).
fn tuple_span(template: &str) -> (usize, usize) {
    let open = template
        .find("VALUES (")
        .map(|i| i + "VALUES ".len())
        .expect("a multi-row template has a VALUES tuple");
    let mut depth = 0i32;
    let close = template[open..]
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(open + i + 1)
        })
        .expect("the VALUES tuple is closed");
    (open, close)
}

/// `template` with its first `VALUES (…)` tuple repeated `rows` times, placeholders renumbered
/// (or anonymous, when asked for and the tuple takes `$1 … $k` once each, in order).
fn repeat_tuple(template: &str, rows: usize, spelling: Placeholders) -> String {
    let (open, close) = tuple_span(template);
    let tuple = &template[open..close];
    let columns = placeholders(tuple).max().unwrap_or(0);
    let anonymous = spelling == Placeholders::Anonymous && placeholders(tuple).eq(1..=columns);
    let mut out = String::with_capacity(template.len() + rows * (tuple.len() + 8));
    out.push_str(&template[..open]);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        let mut rest = tuple;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let n: usize = after[..digits].parse().unwrap_or(0);
            if anonymous {
                out.push('?');
            } else {
                out.push_str(&format!("${}", n + row * columns));
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
    }
    out.push_str(&template[close..]);
    out
}

/// The numbers of the `$n` placeholders in `text`.
fn placeholders(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.split('$').skip(1).filter_map(|part| {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        part[..digits].parse().ok()
    })
}

/// Statement sizes that together take `n` rows: as many `max` (a power of two up to
/// [`MAX_ROWS`]) as fit, then the binary digits of the rest, largest first.
pub(super) fn chunks(n: usize, max: usize) -> impl Iterator<Item = usize> {
    debug_assert!(max.is_power_of_two() && max <= MAX_ROWS);
    let full = n / max;
    let rest = n % max;
    let digits = (0..SIZES)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| rest & size != 0);
    std::iter::repeat_n(max, full).chain(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up_and_are_powers_of_two() {
        for max in [1, 16, MAX_ROWS] {
            for n in [0, 1, 2, 3, 7, 255, 256, 257, 1000, 2000] {
                let sizes: Vec<usize> = chunks(n, max).collect();
                assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
                assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= max));
                assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first");
            }
        }
        assert_eq!(chunks(300, MAX_ROWS).collect::<Vec<_>>(), [256, 32, 8, 4]);
        assert_eq!(chunks(40, 16).collect::<Vec<_>>(), [16, 16, 8]);
        assert_eq!(chunks(0, MAX_ROWS).count(), 0);
    }

    static PAIR: MultiRow = MultiRow::new(
        "INSERT INTO t (a, b) VALUES ($1, NULLIF(CAST($2 AS REAL), -1)) ON CONFLICT DO NOTHING",
    );

    #[test]
    fn placeholders_run_on_from_row_to_row_and_casts_stay() {
        assert_eq!(
            PAIR.sql(1, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, NULLIF(CAST($2 AS REAL), -1)) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            PAIR.sql(2, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, NULLIF(CAST($2 AS REAL), -1)), \
             ($3, NULLIF(CAST($4 AS REAL), -1)) ON CONFLICT DO NOTHING"
        );
        assert!(
            PAIR.sql(256, Placeholders::Numbered)
                .ends_with("($511, NULLIF(CAST($512 AS REAL), -1)) ON CONFLICT DO NOTHING")
        );
    }

    #[test]
    fn a_row_has_as_many_columns_as_its_tuple_has_placeholders() {
        assert_eq!(PAIR.columns(), 2);
        static ROLLUP: MultiRow = MultiRow::new(include_str!("../queries/upsert_rollup.sql"));
        assert_eq!(ROLLUP.columns(), 36);
    }

    #[test]
    fn a_query_file_is_its_own_one_row_form() {
        let file = include_str!("../queries/insert_result.sql");
        assert_eq!(repeat_tuple(file, 1, Placeholders::Numbered), file);
        let two = repeat_tuple(file, 2, Placeholders::Numbered);
        assert!(two.contains("$12), ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"));
        assert_eq!(placeholders(&two).max(), Some(24));
    }

    #[test]
    fn sqlite_gets_anonymous_placeholders_where_each_is_taken_once_in_order() {
        assert_eq!(
            PAIR.sql(2, Placeholders::Anonymous),
            "INSERT INTO t (a, b) VALUES (?, NULLIF(CAST(? AS REAL), -1)), \
             (?, NULLIF(CAST(? AS REAL), -1)) ON CONFLICT DO NOTHING"
        );
        // touch_host takes $2 twice: its rows stay numbered.
        let touch = include_str!("../queries/touch_host.sql");
        assert!(
            repeat_tuple(touch, 2, Placeholders::Anonymous).contains("($1, $2, $2), ($3, $4, $4)")
        );
    }
}
