-- =====================================================================
-- Expiry sweeper (src/sweeper.c, src/sweeper_status.c)
--
-- The sweeping itself is harbor._sweep_batch() and harbor._purge_closed()
-- (reservations part); these functions only start, stop and watch the
-- background workers that call them.
-- =====================================================================

CREATE FUNCTION harbor.sweeper_status()
    RETURNS TABLE (database name, mode text, pid integer, launcher_pid integer,
                   state text, last_run_start timestamptz, last_run_end timestamptz,
                   released_last bigint, purged_last bigint,
                   released_total bigint, purged_total bigint,
                   rounds bigint, errors bigint,
                   last_error text, last_error_at timestamptz)
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_sweeper_status';
COMMENT ON FUNCTION harbor.sweeper_status() IS
    'the expiry sweeper of every database of the cluster: worker, last round, counts and last error';

CREATE VIEW harbor.sweepers AS
    SELECT s.database, s.mode, s.pid, s.launcher_pid, s.state,
           s.last_run_start, s.last_run_end, s.released_last, s.purged_last,
           s.released_total, s.purged_total, s.rounds, s.errors,
           s.last_error, s.last_error_at
      FROM harbor.sweeper_status() s;

CREATE FUNCTION harbor.start_sweeper()
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_start_sweeper';
COMMENT ON FUNCTION harbor.start_sweeper() IS
    'start a background worker that sweeps this database, acting as the calling role; returns its pid';

CREATE FUNCTION harbor.stop_sweeper()
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_stop_sweeper';
COMMENT ON FUNCTION harbor.stop_sweeper() IS
    'stop the worker started by start_sweeper() in this database; false when none runs';

-- Starting a worker takes one of max_worker_processes slots, which parallel
-- query and other extensions share: superusers only, unless granted.
-- The status names databases and may carry error messages: monitoring
-- roles only, unless granted.
REVOKE ALL ON FUNCTION harbor.start_sweeper() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor.stop_sweeper() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor.sweeper_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION harbor.sweeper_status() TO pg_monitor;
GRANT SELECT ON harbor.sweepers TO pg_monitor;
