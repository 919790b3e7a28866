-- A probe kind has one name, the first part of its check ids (`backup.daily` is of kind
-- `backup`): `backup_dir`, `wal_archive`, `archive_dir` and `pg_back_rest` become `backup`,
-- `wal`, `archive` and `pgbackrest` in the rollups, which reports read by kind.
-- `results.kind` and the observations stored in `results` and `check_state` keep the names
-- they were written with: nothing selects by them, the collector reads the old names too, and
-- rewriting every stored result would hold a large store for a long time. New rows carry the
-- one name; old ones leave with retention.
UPDATE rollups SET kind = 'backup' WHERE kind = 'backup_dir';
UPDATE rollups SET kind = 'wal' WHERE kind = 'wal_archive';
UPDATE rollups SET kind = 'archive' WHERE kind = 'archive_dir';
UPDATE rollups SET kind = 'pgbackrest' WHERE kind = 'pg_back_rest';
