-- Backwatch: the monitoring role on each monitored PostgreSQL server (PostgreSQL 12 or later).
--
-- Run once per cluster as a superuser, e.g.:
--   sudo -u postgres psql -v ON_ERROR_STOP=1 < postgres-grants.sql
-- On a streaming standby there is nothing to run: roles replicate from the primary.
-- Running it again stops at CREATE ROLE ("already exists"); that is harmless.
--
-- No password: the agent connects over the local socket as the OS user backwatch, and `peer`
-- authentication maps it to this role of the same name (pg_hba.conf line below). The agent's
-- DSN is then "host=/var/run/postgresql user=backwatch dbname=postgres".

CREATE ROLE backwatch LOGIN;

-- pg_monitor is all the agent needs, and it is read-only: it cannot change settings, signal
-- backends or read table data. What the WAL probe reads, and why pg_monitor covers it:
--   - pg_stat_archiver (archived/failed counts, last_archived_wal/_time, last_failed_*): its
--     columns are readable by any role; no grant needed.
--   - pg_ls_archive_statusdir() (PostgreSQL 12+): the .ready files in pg_wal/archive_status,
--     from which the archive delay is measured (age of the oldest segment still waiting).
--     EXECUTE on it is granted to pg_monitor only. On PostgreSQL 10/11 the function does not
--     exist and the check reports that it needs 12 or later.
--   - current_setting('archive_command'): not a superuser-only setting in core PostgreSQL
--     (checked on 15: any role reads it). Settings that are superuser-only need
--     pg_read_all_settings, which pg_monitor includes, so a server or fork that restricts it
--     is covered too. The probe reads it with current_setting() and not from pg_settings on
--     purpose: a hidden value must fail loudly, not look like an empty archive_command.
--   - archive_mode, archive_timeout, wal_segment_size, pg_is_in_recovery(),
--     pg_current_wal_lsn(), pg_last_wal_receive_lsn(), pg_walfile_name(): open to any role.
--   - pg_control_system() and pg_control_checkpoint() (the archive directory probe, when its
--     [[archive_dir]] names this server's [[wal]] probe: when initdb ran, the timeline): open to
--     any role by default; if a server revokes them, only the cluster's age goes unknown.
-- No superuser, no pg_read_server_files, no access to pg_wal or the archive directory itself.
GRANT pg_monitor TO backwatch;

-- Optional hardening, all compatible with the agent (one connection per probe, short queries):
--   ALTER ROLE backwatch CONNECTION LIMIT 3;
--   ALTER ROLE backwatch SET statement_timeout = '10s';   -- the agent also sets its own
--   ALTER ROLE backwatch SET default_transaction_read_only = on;

-- pg_hba.conf: allow exactly this role, over the local socket, into the postgres database,
-- authenticated by the kernel-verified OS user name (peer). Put it above any broader `local`
-- line (first match wins), then reload: SELECT pg_reload_conf();
--
--   # TYPE  DATABASE  USER       METHOD
--   local   postgres  backwatch  peer
--
-- If the agent runs under another OS user name, map it with pg_ident.conf
-- (`local postgres backwatch peer map=backwatch` and a map line `backwatch <os-user> backwatch`).
