-- pgTAP: the sweeper's SQL surface and its privileges.  The worker itself
-- is exercised by test/suites/sweeper.sh, which needs its own clusters.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET client_min_messages = warning;
SELECT plan(19);

SELECT has_function('harbor', 'sweeper_status', '{}'::name[]);
SELECT has_function('harbor', 'start_sweeper', '{}'::name[]);
SELECT has_function('harbor', 'stop_sweeper', '{}'::name[]);
SELECT has_view('harbor', 'sweepers', 'view harbor.sweepers');
SELECT function_returns('harbor', 'start_sweeper', '{}'::name[], 'integer');
SELECT function_returns('harbor', 'stop_sweeper', '{}'::name[], 'boolean');
SELECT columns_are('harbor', 'sweepers',
    ARRAY['database', 'mode', 'pid', 'launcher_pid', 'state', 'last_run_start', 'last_run_end',
          'released_last', 'purged_last', 'released_total', 'purged_total', 'rounds', 'errors',
          'last_error', 'last_error_at']);

-- Starting a worker takes a max_worker_processes slot: not for PUBLIC.
SELECT ok(NOT has_function_privilege('public', 'harbor.start_sweeper()', 'EXECUTE'),
          'start_sweeper is not executable by PUBLIC');
SELECT ok(NOT has_function_privilege('public', 'harbor.stop_sweeper()', 'EXECUTE'),
          'stop_sweeper is not executable by PUBLIC');
SELECT ok(NOT has_function_privilege('public', 'harbor.sweeper_status()', 'EXECUTE'),
          'sweeper_status is not executable by PUBLIC');
SELECT ok(has_function_privilege('pg_monitor', 'harbor.sweeper_status()', 'EXECUTE'),
          'pg_monitor may read the sweeper status');
SELECT ok(has_table_privilege('pg_monitor', 'harbor.sweepers', 'SELECT'),
          'pg_monitor may read harbor.sweepers');

CREATE ROLE harbor_tap_clerk LOGIN;
SET LOCAL ROLE harbor_tap_clerk;
SELECT throws_ok('SELECT harbor.start_sweeper()', '42501',
                 'permission denied for function start_sweeper', 'a plain role cannot start a sweeper');
SELECT throws_ok('SELECT * FROM harbor.sweeper_status()', '42501',
                 'permission denied for function sweeper_status', 'nor read the status');
RESET ROLE;

-- Nothing started in this database: stop_sweeper has nothing to stop.
SELECT is(harbor.stop_sweeper(), false, 'stop_sweeper returns false when no dynamic sweeper runs here');
SELECT is((SELECT count(*) FROM harbor.sweeper_status()
            WHERE database = current_database() AND mode = 'dynamic'), 0::bigint,
          'no dynamic sweeper is listed for this database');

-- The sweeper's time limits: server-wide, reloadable, not per session.
SELECT is(current_setting('harbor_orm.sweep_lock_timeout'), '1s',
          'a sweep waits at most 1 s for a lock by default');
SELECT is(current_setting('harbor_orm.sweep_statement_timeout'), '1min',
          'a sweep batch runs at most 1 min by default');
SELECT throws_ok('SET harbor_orm.sweep_lock_timeout = 0', '55P02', NULL,
                 'the lock timeout is not a session setting');

SELECT * FROM finish();
ROLLBACK;
