/*-------------------------------------------------------------------------
 *
 * sweeper.c
 *	  The expiry sweeper's processes: a launcher started by the postmaster
 *	  when harbor_orm is preloaded, and the per-database workers that call
 *	  harbor._sweep_batch() and harbor._purge_closed() one batch per
 *	  transaction.
 *
 * The launcher connects to no database.  Every harbor_orm.sweep_interval it
 * reads pg_database and pg_authid (shared catalogs), and for each database
 * of harbor_orm.sweeper_databases that can be swept it starts a short-lived
 * worker connected to that database, waits for it to finish its round, and
 * goes on with the next database.  Between rounds no process is connected
 * to a served database, so DROP DATABASE finds nobody to wait for; during a
 * round the worker takes a conditional lock on the database before every
 * batch and leaves as soon as DROP DATABASE (or ALTER DATABASE RENAME / SET
 * TABLESPACE, CREATE DATABASE ... TEMPLATE) wants it, so those wait for one
 * batch at most.  A database that does not exist, refuses connections or
 * lacks the extension is skipped with one LOG line when its state changes,
 * and checked again next round.
 *
 * Without preloading, harbor.start_sweeper() (sweeper_status.c) starts a
 * dynamic worker that serves its database until harbor.stop_sweeper(); it
 * stays connected between rounds and probes the same lock four times a
 * second, so it also steps aside for DROP DATABASE.
 *
 * Privileges.  A worker connects as harbor_orm.sweeper_role, or as the
 * bootstrap superuser when that is empty, as autovacuum does; a dynamic
 * worker as the role that started it.  It runs no SQL of its own: it calls
 * the sweep code of this library directly (reservations.h), so no function
 * is looked up by name, and that code switches to each stock table's owner
 * with SECURITY_RESTRICTED_OPERATION for every statement that touches the
 * table, as VACUUM does.  Code a table owner attaches to the table
 * (triggers, CHECK constraints, index and generated-column expressions)
 * therefore runs with the owner's rights, never the worker's.  What the
 * worker runs as itself touches only harbor's own tables, with
 * search_path = pg_catalog, pg_temp set again before every batch in case
 * anything run during the previous one changed it.
 *
 * Batch sizes.  A release batch keeps the items of the holds it releases
 * locked until it commits, and checkouts of those items wait for it: the
 * more holds a batch takes, the more items it locks and the longer it
 * holds them.  So release batches are sized by what they cost others:
 * just before a batch commits, the worker asks whether any backend waits
 * for its transaction;
 * if one does, or the batch took over SWEEP_BATCH_MAX_MS, the next batch
 * is half the size, else a full enough batch doubles it, between
 * SWEEP_BATCH_MIN and harbor_orm.sweep_batch_size.  Batches commit with
 * synchronous_commit off, so their row locks are not held through a WAL
 * flush (see worker_apply_settings).  Purge batches lock no item and take
 * harbor_orm.sweep_batch_size rows.
 *
 * Time limits.  Every batch runs under harbor_orm.sweep_lock_timeout (a
 * lock timeout ends the database's round with one LOG line; the next round
 * tries again) and harbor_orm.sweep_statement_timeout.  The launcher waits
 * for a worker only while it makes progress: one that finishes no batch for
 * the statement timeout plus a grace period is terminated, and the launcher
 * goes on with the next database.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "harbor_orm.h"
#include "reservations.h"
#include "sweeper.h"

/*
 * Delay before the postmaster restarts a launcher that exited with an
 * error or was terminated.  After a crash of any process, crash recovery
 * restarts it at once.  Documented in docs/sweeper.md.
 */
#define HARBOR_LAUNCHER_RESTART_SECONDS 5

/* How often a dynamic worker checks, between rounds, whether to step aside. */
#define HARBOR_IDLE_PROBE_MS		250

/*
 * The launcher terminates a worker that has finished no batch for
 * harbor_orm.sweep_statement_timeout plus this, which covers connecting and
 * the bookkeeping between batches; then it waits this long for it to exit.
 */
#define HARBOR_WATCHDOG_GRACE_MS	10000
#define HARBOR_TERMINATE_WAIT_MS	5000

/* The two units of work, each one call per transaction. */
typedef enum SweepKind
{
	SWEEP_RELEASE,
	SWEEP_PURGE
} SweepKind;

/* What pg_stat_activity shows while a batch runs. */
static const char *const sweep_activity[] = {
	"harbor_orm sweeper: releasing expired reservations",
	"harbor_orm sweeper: deleting closed reservations"
};

static const char *const sweep_what[] = {
	"releasing expired reservations",
	"deleting closed reservations"
};

/* What ended a worker's round (or its serving, for a dynamic worker). */
typedef enum RoundEnd
{
	ROUND_DONE,
	ROUND_FAILED,
	ROUND_LOCKED,
	ROUND_YIELDED,
	ROUND_STOPPED
} RoundEnd;

/* Worker state, per process. */
static HarborSweeperArgs my_args;
static HarborSweeperSlot *my_slot = NULL;
static char *my_dbname = NULL;

/* Launcher state, per process. */
static bool launcher_said_role = false;
static char launcher_role[NAMEDATALEN];
static bool launcher_warned_slots = false;
static bool launcher_was_disabled = false;

/* ---------------------------------------------------------------------
 * Registration.
 * ---------------------------------------------------------------------
 */

/*
 * Called from _PG_init.  The launcher exists only when the library is
 * preloaded; the status area is then reserved at server start.
 */
void
harbor_sweeper_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	harbor_sweeper_status_init();

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Not on a standby: the launcher starts when recovery ends (promotion). */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = HARBOR_LAUNCHER_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "harbor_orm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "harbor_sweeper_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "harbor_orm sweeper launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "harbor_orm sweeper launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Starts a worker for one database; false when no background worker slot
 * is free.  The caller is notified (latch) when it stops.
 */
bool
harbor_sweeper_register_worker(const HarborSweeperArgs *args, const char *dbname,
							   BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* The launcher starts a fresh one next round; a dynamic one is explicit. */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "harbor_orm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "harbor_sweeper_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "harbor_orm sweeper for database %s", dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "harbor_orm sweeper");
	worker.bgw_main_arg = Int32GetDatum(args->slot);
	worker.bgw_notify_pid = MyProcPid;
	StaticAssertStmt(sizeof(HarborSweeperArgs) <= BGW_EXTRALEN,
					 "sweeper arguments do not fit in bgw_extra");
	memcpy(worker.bgw_extra, args, sizeof(HarborSweeperArgs));

	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * Check hook of harbor_orm.sweeper_databases: a list of database names,
 * no more than the status area can track.
 */
bool
harbor_check_sweeper_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = true;

	if (!SplitIdentifierString(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		ok = false;
	}
	else if (list_length(names) > HARBOR_SWEEPER_MAX_SLOTS)
	{
		GUC_check_errdetail("The sweeper serves at most %d databases.",
							HARBOR_SWEEPER_MAX_SLOTS);
		ok = false;
	}
	list_free(names);
	pfree(raw);
	return ok;
}

/* ---------------------------------------------------------------------
 * Status updates and the log lines that go with them.
 * ---------------------------------------------------------------------
 */

/*
 * Records the outcome of a round; true when it differs from the previous
 * one (for errors: a different message), which is when it is logged.
 */
static bool
slot_set_state(HarborSweeperSlot *slot, uint32 generation,
			   HarborSweeperState state, const char *error)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();
	bool		changed = false;

	SpinLockAcquire(&shared->mutex);
	if (slot->in_use && slot->generation == generation)
	{
		changed = slot->state != state;
		if (state == HSS_ERROR)
		{
			if (strncmp(slot->last_error, error, HARBOR_SWEEPER_ERRLEN - 1) != 0)
				changed = true;
			strlcpy(slot->last_error, error, HARBOR_SWEEPER_ERRLEN);
			slot->last_error_at = GetCurrentTimestamp();
			slot->errors++;
		}
		slot->state = state;
	}
	SpinLockRelease(&shared->mutex);
	return changed;
}

/* One LOG line for a database's new state. */
static void
log_state(const char *dbname, HarborSweeperState state, const char *role)
{
	switch (state)
	{
		case HSS_OK:
			ereport(LOG,
					(errmsg("harbor_orm sweeper is serving database \"%s\"", dbname)));
			break;
		case HSS_NO_DATABASE:
			ereport(LOG,
					(errmsg("harbor_orm sweeper is skipping database \"%s\": it does not exist",
							dbname),
					 errdetail("It is checked again every round.")));
			break;
		case HSS_NO_CONNECT:
			ereport(LOG,
					(errmsg("harbor_orm sweeper is skipping database \"%s\": it does not allow connections",
							dbname),
					 errdetail("It is checked again every round.")));
			break;
		case HSS_NO_EXTENSION:
			ereport(LOG,
					(errmsg("harbor_orm sweeper is skipping database \"%s\": extension \"harbor_orm\" is not installed there",
							dbname),
					 errdetail("It is checked again every round.")));
			break;
		case HSS_BAD_ROLE:
			ereport(LOG,
					(errmsg("harbor_orm sweeper is skipping database \"%s\": role \"%s\" does not exist or cannot log in",
							dbname, role),
					 errhint("Set harbor_orm.sweeper_role to an existing role with the LOGIN attribute.")));
			break;
		case HSS_NO_WORKER:
			ereport(LOG,
					(errmsg("harbor_orm sweeper could not start a worker for database \"%s\"",
							dbname),
					 errdetail("All background worker slots are in use (max_worker_processes is %d).",
							   max_worker_processes),
					 errhint("Raise max_worker_processes; the database is tried again next round.")));
			break;
		case HSS_YIELDED:
			ereport(LOG,
					(errmsg("harbor_orm sweeper left database \"%s\" to a pending DROP DATABASE or ALTER DATABASE",
							dbname)));
			break;
		case HSS_STOPPED:
			ereport(LOG,
					(errmsg("harbor_orm sweeper of database \"%s\" stopped", dbname)));
			break;
		case HSS_ERROR:
			ereport(LOG,
					(errmsg("harbor_orm sweeper worker for database \"%s\" exited before finishing its round",
							dbname),
					 errhint("The server log has the reason.")));
			break;
		case HSS_NEW:
		case HSS_DISABLED:
		case HSS_LOCK_TIMEOUT:	/* logged with the lock error's context */
			break;
	}
}

/* ---------------------------------------------------------------------
 * Per-database worker.
 * ---------------------------------------------------------------------
 */

/*
 * Whether the database is free to work in: false when a session holds or
 * waits for a lock on it that conflicts with connecting (DROP DATABASE,
 * ALTER DATABASE RENAME or SET TABLESPACE, CREATE DATABASE from it as
 * template).  In a transaction the lock is kept until its end, so such a
 * command waits for that one batch; outside one it is released at once.
 */
static bool
database_is_free(bool in_transaction)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, !in_transaction, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	if (!in_transaction)
		LockRelease(&tag, RowExclusiveLock, true);
	return true;
}

static bool
stop_requested(void)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();
	bool		stop;

	SpinLockAcquire(&shared->mutex);
	stop = my_slot->generation != my_args.generation || my_slot->stop_requested ||
		(!my_args.dynamic && my_slot->launch != my_args.launch);
	SpinLockRelease(&shared->mutex);
	return stop;
}

/*
 * The session settings every batch runs with, set before each one: no
 * object a user creates may be picked up by name, even if code run during
 * an earlier batch changed the session's search_path; and no lock wait may
 * hold up the sweep of the other databases for long.  Session level, so
 * they override what ALTER DATABASE or ALTER ROLE set.
 */
static void
worker_apply_settings(void)
{
	char		buf[32];

	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	/*
	 * A batch's item row locks are released at its commit, after the WAL
	 * flush; without waiting for the flush, checkouts of those items wait
	 * for the batch's work only, and a small batch costs no flush of its
	 * own.  Losing the last batches in a crash loses nothing: each batch's
	 * holds and stock change together, the holds stay active and expired,
	 * and the next round releases them.  A checkout that read the stock a
	 * batch gave back flushes that batch's commit record with its own.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	snprintf(buf, sizeof(buf), "%d", harbor_sweep_lock_timeout);
	SetConfigOption("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION);
}

static void
worker_reload_config(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static void
sweep_error_context(void *arg)
{
	SweepKind	kind = (SweepKind) (intptr_t) arg;

	errcontext("harbor_orm sweeper %s in database \"%s\"",
			   sweep_what[kind], my_dbname);
}

/*
 * One batch, inside the caller's transaction; returns the rows it handled.
 * The statement timeout is armed here rather than through the GUC, which
 * only a client connection applies; code run during the batch cannot
 * disarm it by setting statement_timeout.
 */
static int64
run_one_batch(SweepKind kind, int batch_size)
{
	int64		n;

	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, sweep_activity[kind]);
	enable_timeout_after(STATEMENT_TIMEOUT, harbor_sweep_statement_timeout);
	if (kind == SWEEP_RELEASE)
		n = harbor_sweep_expired_batch(batch_size);
	else
		n = harbor_purge_closed_batch(batch_size);
	disable_timeout(STATEMENT_TIMEOUT, false);
	PopActiveSnapshot();
	return n;
}

static void
add_to_counters(SweepKind kind, int64 n)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();

	SpinLockAcquire(&shared->mutex);
	if (my_slot->generation == my_args.generation)
	{
		my_slot->progress_at = GetCurrentTimestamp();
		if (kind == SWEEP_RELEASE)
		{
			my_slot->released_last += n;
			my_slot->released_total += n;
		}
		else
		{
			my_slot->purged_last += n;
			my_slot->purged_total += n;
		}
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * Release batch sizing: a batch whose row locks someone waited for (a
 * checkout queued on its transaction when it was about to commit) halves
 * the next one; a full enough batch nobody waited for doubles it, unless
 * it took longer than SWEEP_BATCH_MAX_MS, which halves it too.
 */
#define SWEEP_BATCH_MAX_MS		50
#define SWEEP_BATCH_MIN			16

/* The size of the next release batch; carried over between rounds. */
static int	release_batch_size = 64;

static int
next_release_batch_size(int size, int64 n, long elapsed_ms, bool waited_for)
{
	if (waited_for || elapsed_ms > SWEEP_BATCH_MAX_MS)
		size /= 2;
	else if (n >= size / 2)
		size *= 2;
	return Min(Max(size, SWEEP_BATCH_MIN), harbor_sweep_batch_size);
}

/*
 * Whether another backend waits for this transaction: a row lock waiter
 * waits on the locker's transaction id.  Each model's work ran in a
 * subtransaction, which locked its rows, but a subtransaction's own id lock
 * is released at its commit and its waiters then wait on the top-level
 * transaction (XactLockTableWait follows the parent), so the top-level id
 * is the one to ask about, just before the commit.
 */
static bool
batch_waited_for(void)
{
	TransactionId xid = GetTopTransactionIdIfAny();
	LOCKTAG		tag;

	if (!TransactionIdIsValid(xid))
		return false;
	SET_LOCKTAG_TRANSACTION(tag, xid);
	return LockHasWaiters(&tag, ExclusiveLock, false);
}

/*
 * Calls one batch function until it returns less than half a batch.  An
 * error aborts that batch's transaction only; it is recorded, and logged
 * with its context unless the previous round failed the same way.  A lock
 * timeout is no error: the round ends, to be tried again next round, and
 * one LOG line says so when it starts happening.
 */
static RoundEnd
run_batches(SweepKind kind)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorContextCallback errcallback;
	volatile RoundEnd end = ROUND_DONE;

	errcallback.callback = sweep_error_context;
	errcallback.arg = (void *) (intptr_t) kind;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	PG_TRY();
	{
		for (;;)
		{
			int			batch_size;
			int64		n;
			TimestampTz started;
			bool		waited_for;

			CHECK_FOR_INTERRUPTS();
			worker_reload_config();
			if (stop_requested())
			{
				end = ROUND_STOPPED;
				break;
			}
			if (kind == SWEEP_RELEASE)
				batch_size = Min(release_batch_size, harbor_sweep_batch_size);
			else
				batch_size = harbor_sweep_batch_size;
			worker_apply_settings();

			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			if (!database_is_free(true))
			{
				CommitTransactionCommand();
				end = ROUND_YIELDED;
				break;
			}
			started = GetCurrentTimestamp();
			n = run_one_batch(kind, batch_size);
			waited_for = kind == SWEEP_RELEASE && batch_waited_for();
			CommitTransactionCommand();
			if (kind == SWEEP_RELEASE)
			{
				long		secs;
				int			usecs;

				TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
				release_batch_size = next_release_batch_size(batch_size, n,
															 secs * 1000 + usecs / 1000,
															 waited_for);
			}
			pgstat_report_stat(false);
			pgstat_report_activity(STATE_IDLE, NULL);

			add_to_counters(kind, n);

			/*
			 * A batch skips holds whose item a checkout has locked, so a
			 * batch a little short of full does not mean the backlog is
			 * gone; one less than half full does (what is left is mostly
			 * locked, or new), and ends the round rather than spin.
			 */
			if (n == 0 || n < (batch_size + 1) / 2)
				break;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		locked;

		error_context_stack = errcallback.previous;
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* A timeout that fired as the batch failed must not cancel later work. */
		disable_timeout(STATEMENT_TIMEOUT, false);
		QueryCancelPending = false;
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);

		locked = edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
		if (slot_set_state(my_slot, my_args.generation,
						   locked ? HSS_LOCK_TIMEOUT : HSS_ERROR, edata->message))
		{
			char	   *message = edata->message;

			edata->elevel = LOG;
			if (locked)
			{
				edata->message = psprintf("harbor_orm sweeper skipped the rest of its round in database \"%s\": %s",
										  my_dbname, message);
				if (edata->hint)
					pfree(edata->hint);
				edata->hint = psprintf("A table the sweep needs was locked for longer than harbor_orm.sweep_lock_timeout (%d ms); the next round tries again.",
									   harbor_sweep_lock_timeout);
			}
			else
				edata->message = psprintf("harbor_orm sweeper could not finish its round in database \"%s\": %s",
										  my_dbname, message);
			pfree(message);
			ThrowErrorData(edata);
		}
		FreeErrorData(edata);
		end = locked ? ROUND_LOCKED : ROUND_FAILED;
	}
	PG_END_TRY();
	error_context_stack = errcallback.previous;

	return end;
}

static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("harbor_orm", true));
	CommitTransactionCommand();
	return installed;
}

/*
 * One round in this database: release expired holds, then purge old closed
 * reservations.  Records and logs its outcome; returns how it ended.
 */
static RoundEnd
worker_round(void)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();
	HarborSweeperState prev;
	HarborSweeperState state;
	RoundEnd	end;

	SpinLockAcquire(&shared->mutex);
	prev = my_slot->state;
	SpinLockRelease(&shared->mutex);

	if (!harbor_sweeper_enabled)
	{
		slot_set_state(my_slot, my_args.generation, HSS_DISABLED, NULL);
		return ROUND_DONE;
	}

	if (!extension_installed())
	{
		if (slot_set_state(my_slot, my_args.generation, HSS_NO_EXTENSION, NULL))
			log_state(my_dbname, HSS_NO_EXTENSION, NULL);
		return ROUND_DONE;
	}

	SpinLockAcquire(&shared->mutex);
	if (my_slot->generation == my_args.generation)
	{
		my_slot->sweeping = true;
		my_slot->last_start = GetCurrentTimestamp();
		my_slot->released_last = 0;
		my_slot->purged_last = 0;
	}
	SpinLockRelease(&shared->mutex);

	end = run_batches(SWEEP_RELEASE);
	/* Purging is independent of releasing: do it even after a failure. */
	if (end == ROUND_DONE || end == ROUND_FAILED || end == ROUND_LOCKED)
	{
		RoundEnd	purge_end = run_batches(SWEEP_PURGE);

		if (end == ROUND_DONE || purge_end == ROUND_YIELDED || purge_end == ROUND_STOPPED)
			end = purge_end;
	}

	SpinLockAcquire(&shared->mutex);
	if (my_slot->generation == my_args.generation)
	{
		my_slot->sweeping = false;
		my_slot->last_end = GetCurrentTimestamp();
		my_slot->rounds++;
	}
	SpinLockRelease(&shared->mutex);

	state = end == ROUND_DONE ? HSS_OK :
		end == ROUND_YIELDED ? HSS_YIELDED :
		end == ROUND_STOPPED ? HSS_STOPPED :
		end == ROUND_LOCKED ? HSS_LOCK_TIMEOUT : HSS_ERROR;
	/* Errors and lock timeouts were recorded and logged where they arose. */
	if (state != HSS_ERROR && state != HSS_LOCK_TIMEOUT &&
		slot_set_state(my_slot, my_args.generation, state, NULL))
	{
		if (state == HSS_OK && prev == HSS_ERROR)
			ereport(LOG,
					(errmsg("harbor_orm sweeper swept database \"%s\" without error again",
							my_dbname)));
		else
			log_state(my_dbname, state, NULL);
	}
	return end;
}

/* Leaves the slot tidy however the worker exits, SIGTERM included. */
static void
worker_detach(int code, Datum arg)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();

	SpinLockAcquire(&shared->mutex);
	if (my_slot->generation == my_args.generation && my_slot->pid == MyProcPid)
	{
		my_slot->pid = 0;
		my_slot->sweeping = false;
		my_slot->exited = true;
		if (my_slot->stop_requested)
			my_slot->state = HSS_STOPPED;
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * Waits for the next round of a dynamic worker, stepping aside for DROP
 * DATABASE and answering stop requests and reloads meanwhile.
 */
static RoundEnd
dynamic_wait(TimestampTz round_end)
{
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz next;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		worker_reload_config();
		if (stop_requested())
			return ROUND_STOPPED;
		if (!database_is_free(false))
			return ROUND_YIELDED;

		/* As in the launcher: an interval after the end of the round. */
		next = TimestampTzPlusMilliseconds(round_end,
										   (int64) harbor_sweep_interval * 1000);
		if (now >= next)
			return ROUND_DONE;
		timeout = Min(TimestampDifferenceMilliseconds(now, next), HARBOR_IDLE_PROBE_MS);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
harbor_sweeper_worker_main(Datum arg)
{
	HarborSweeperShared *shared;
	bool		valid;

	memcpy(&my_args, MyBgworkerEntry->bgw_extra, sizeof(HarborSweeperArgs));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	shared = harbor_sweeper_shmem();
	if (my_args.slot < 0 || my_args.slot >= HARBOR_SWEEPER_MAX_SLOTS)
		elog(FATAL, "harbor_orm sweeper started with invalid slot %d", my_args.slot);
	my_slot = &shared->slots[my_args.slot];

	/*
	 * A slot reused since this worker was requested means it is not wanted;
	 * so does a launch the launcher has given up on (it started late).
	 */
	SpinLockAcquire(&shared->mutex);
	valid = my_slot->in_use && my_slot->generation == my_args.generation &&
		!my_slot->stop_requested &&
		(my_args.dynamic || my_slot->launch == my_args.launch);
	if (valid)
	{
		my_slot->pid = MyProcPid;
		my_slot->round_finished = false;
	}
	SpinLockRelease(&shared->mutex);
	if (!valid)
		proc_exit(0);
	on_shmem_exit(worker_detach, (Datum) 0);

	/* Already while connecting, which waits for a lock on the database. */
	worker_apply_settings();
	BackgroundWorkerInitializeConnectionByOid(my_args.dboid, my_args.roleid, 0);

	worker_apply_settings();
	SetConfigOption("application_name", "harbor_orm sweeper", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("harbor_orm sweeper");

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	my_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	if (!my_args.dynamic)
	{
		(void) worker_round();
		SpinLockAcquire(&shared->mutex);
		if (my_slot->generation == my_args.generation && my_slot->launch == my_args.launch)
			my_slot->round_finished = true;
		SpinLockRelease(&shared->mutex);
		proc_exit(0);
	}

	ereport(LOG,
			(errmsg("harbor_orm sweeper started for database \"%s\"", my_dbname)));
	for (;;)
	{
		RoundEnd	end = worker_round();

		if (end == ROUND_DONE || end == ROUND_FAILED || end == ROUND_LOCKED)
		{
			/* A dynamic worker belongs to its database's extension. */
			SpinLockAcquire(&shared->mutex);
			if (my_slot->state == HSS_NO_EXTENSION)
				end = ROUND_STOPPED;
			SpinLockRelease(&shared->mutex);
			if (end == ROUND_STOPPED)
				break;
			end = dynamic_wait(GetCurrentTimestamp());
		}
		if (end == ROUND_YIELDED || end == ROUND_STOPPED)
		{
			HarborSweeperState state = end == ROUND_YIELDED ? HSS_YIELDED : HSS_STOPPED;

			if (slot_set_state(my_slot, my_args.generation, state, NULL))
				log_state(my_dbname, state, NULL);
			break;
		}
	}
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * Launcher.
 * ---------------------------------------------------------------------
 */

typedef struct LauncherDatabase
{
	NameData	name;
	Oid			oid;
	bool		allowconn;
} LauncherDatabase;

static void
launcher_detach(int code, Datum arg)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();

	SpinLockAcquire(&shared->mutex);
	if (shared->launcher_pid == MyProcPid)
		shared->launcher_pid = 0;
	SpinLockRelease(&shared->mutex);
}

/*
 * Says which role the workers connect as, at start and after each reload
 * that changes it.  The bootstrap superuser is no danger to other tables:
 * the sweep code acts as each stock table's owner wherever the table's own
 * code can run, as autovacuum does.
 */
static void
launcher_check_role_setting(void)
{
	const char *role = harbor_sweeper_role ? harbor_sweeper_role : "";

	if (launcher_said_role && strcmp(role, launcher_role) == 0)
		return;
	if (role[0] == '\0')
		ereport(LOG,
				(errmsg("harbor_orm sweeper connects as the bootstrap superuser"),
				 errdetail("harbor_orm.sweeper_role is not set.  Each stock table is swept as its owner, as a security-restricted operation.")));
	else
		ereport(LOG,
				(errmsg("harbor_orm sweeper connects as role \"%s\"", role),
				 errdetail("Each stock table is swept as its owner, as a security-restricted operation.")));
	strlcpy(launcher_role, role, sizeof(launcher_role));
	launcher_said_role = true;
}

/* Slot of a launcher-served database, claimed if new; -1 when full. */
static int
launcher_slot(HarborSweeperShared *shared, const char *dbname)
{
	int			free_slot = -1;
	int			i;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS; i++)
	{
		HarborSweeperSlot *slot = &shared->slots[i];

		if (slot->in_use && !slot->dynamic &&
			strcmp(NameStr(slot->dbname), dbname) == 0)
			break;
		if (!slot->in_use && free_slot < 0)
			free_slot = i;
	}
	if (i == HARBOR_SWEEPER_MAX_SLOTS && free_slot >= 0)
	{
		HarborSweeperSlot *slot = &shared->slots[free_slot];
		uint32		generation = slot->generation + 1;

		memset(slot, 0, sizeof(HarborSweeperSlot));
		slot->in_use = true;
		slot->generation = generation;
		namestrcpy(&slot->dbname, dbname);
		i = free_slot;
	}
	SpinLockRelease(&shared->mutex);
	return i < HARBOR_SWEEPER_MAX_SLOTS ? i : -1;
}

/* Forgets databases no longer listed in harbor_orm.sweeper_databases. */
static void
launcher_forget_unlisted(HarborSweeperShared *shared, List *names)
{
	int			i;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS; i++)
	{
		HarborSweeperSlot *slot = &shared->slots[i];
		ListCell   *lc;
		bool		listed = false;

		if (!slot->in_use || slot->dynamic)
			continue;
		foreach(lc, names)
		{
			if (strcmp(NameStr(slot->dbname), (char *) lfirst(lc)) == 0)
				listed = true;
		}
		if (!listed)
			slot->in_use = false;
	}
	SpinLockRelease(&shared->mutex);
}

/* Reads pg_database (a shared catalog, readable without a database). */
static LauncherDatabase *
launcher_read_databases(MemoryContext cxt, int *count, const char *role,
						Oid *roleid, bool *role_ok)
{
	LauncherDatabase *dbs;
	int			n = 0;
	int			cap = 16;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	dbs = MemoryContextAlloc(cxt, cap * sizeof(LauncherDatabase));

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	pgstat_report_activity(STATE_RUNNING, "reading pg_database");

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		CHECK_FOR_INTERRUPTS();

		if (n == cap)
		{
			cap *= 2;
			dbs = repalloc(dbs, cap * sizeof(LauncherDatabase));
		}
		dbs[n].name = db->datname;
		dbs[n].oid = db->oid;
		dbs[n].allowconn = db->datallowconn;
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	*roleid = InvalidOid;
	*role_ok = true;
	if (role[0] != '\0')
	{
		HeapTuple	roletup = SearchSysCache1(AUTHNAME, CStringGetDatum(role));

		*role_ok = false;
		if (HeapTupleIsValid(roletup))
		{
			Form_pg_authid form = (Form_pg_authid) GETSTRUCT(roletup);

			*roleid = form->oid;
			*role_ok = form->rolcanlogin;
			ReleaseSysCache(roletup);
		}
	}

	CommitTransactionCommand();
	/* Commit leaves TopMemoryContext current; the round allocates in cxt. */
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	*count = n;
	return dbs;
}

/*
 * Runs one worker for one database and waits until it has exited, or until
 * it has been terminated for making no progress and has had its time to go.
 */
static void
launcher_sweep_database(HarborSweeperShared *shared, int slotno, Oid dboid,
						Oid roleid, const char *dbname)
{
	HarborSweeperSlot *slot = &shared->slots[slotno];
	HarborSweeperArgs args;
	BackgroundWorkerHandle *handle;
	bool		finished;
	bool		terminated = false;
	TimestampTz gone_by = 0;
	pid_t		old_pid;

	memset(&args, 0, sizeof(args));
	SpinLockAcquire(&shared->mutex);
	old_pid = slot->pid;
	if (old_pid == 0)
	{
		slot->dboid = dboid;
		slot->roleid = roleid;
		slot->round_finished = false;
		slot->exited = false;
		slot->launch++;
		slot->progress_at = GetCurrentTimestamp();
	}
	args.generation = slot->generation;
	args.launch = slot->launch;
	SpinLockRelease(&shared->mutex);

	/* Never two workers in one database. */
	if (old_pid != 0)
	{
		char	   *msg = psprintf("the worker of an earlier round (process %d) has not exited",
								   (int) old_pid);

		if (slot_set_state(slot, args.generation, HSS_ERROR, msg))
			ereport(LOG,
					(errmsg("harbor_orm sweeper is skipping database \"%s\": %s",
							dbname, msg),
					 errdetail("It was terminated for making no progress; the database is tried again every round.")));
		return;
	}

	args.slot = slotno;
	args.dboid = dboid;
	args.roleid = roleid;
	args.dynamic = false;

	if (!harbor_sweeper_register_worker(&args, dbname, &handle))
	{
		if (slot_set_state(slot, args.generation, HSS_NO_WORKER, NULL))
			log_state(dbname, HSS_NO_WORKER, NULL);
		return;
	}

	pgstat_report_activity(STATE_RUNNING, "waiting for a sweeper worker");
	for (;;)
	{
		pid_t		pid;
		TimestampTz now;
		TimestampTz stall_at;
		TimestampTz progress_at;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			launcher_check_role_setting();
		}
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			break;

		now = GetCurrentTimestamp();
		if (terminated)
		{
			if (now >= gone_by)
			{
				ereport(LOG,
						(errmsg("harbor_orm sweeper worker for database \"%s\" has not exited %d s after it was terminated; going on without it",
								dbname, HARBOR_TERMINATE_WAIT_MS / 1000)));
				break;
			}
			timeout = Min(TimestampDifferenceMilliseconds(now, gone_by), 1000L);
		}
		else
		{
			SpinLockAcquire(&shared->mutex);
			progress_at = slot->progress_at;
			SpinLockRelease(&shared->mutex);
			stall_at = TimestampTzPlusMilliseconds(progress_at,
												   (int64) harbor_sweep_statement_timeout +
												   HARBOR_WATCHDOG_GRACE_MS);
			if (now >= stall_at)
			{
				char	   *msg = psprintf("sweeper worker terminated after %ld s without progress",
										   (long) ((now - progress_at) / USECS_PER_SEC));

				ereport(LOG,
						(errmsg("harbor_orm sweeper worker for database \"%s\" has finished no batch for %ld s; terminating it",
								dbname, (long) ((now - progress_at) / USECS_PER_SEC)),
						 errdetail("A batch may run for harbor_orm.sweep_statement_timeout (%d ms).",
								   harbor_sweep_statement_timeout)));
				(void) slot_set_state(slot, args.generation, HSS_ERROR, msg);
				TerminateBackgroundWorker(handle);
				terminated = true;
				gone_by = TimestampTzPlusMilliseconds(now, HARBOR_TERMINATE_WAIT_MS);
				continue;
			}
			timeout = Min(TimestampDifferenceMilliseconds(now, stall_at), 1000L);
		}
		/* The postmaster sets our latch when the worker stops. */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	pfree(handle);
	pgstat_report_activity(STATE_IDLE, NULL);

	SpinLockAcquire(&shared->mutex);
	finished = slot->round_finished || slot->generation != args.generation;
	/* A worker that has not started yet never will. */
	if (!finished)
		slot->launch++;
	SpinLockRelease(&shared->mutex);
	if (!finished && !terminated &&
		slot_set_state(slot, args.generation, HSS_ERROR,
					   "sweeper worker exited before finishing its round; the server log has the reason"))
		log_state(dbname, HSS_ERROR, NULL);
}

/* One round: every listed database in turn. */
static void
launcher_round(HarborSweeperShared *shared, MemoryContext cxt)
{
	char	   *raw = pstrdup(harbor_sweeper_databases);
	char	   *role = pstrdup(harbor_sweeper_role ? harbor_sweeper_role : "");
	List	   *names = NIL;
	List	   *unique = NIL;
	ListCell   *lc;
	LauncherDatabase *dbs;
	int			ndbs;
	Oid			roleid;
	bool		role_ok;

	/* The check hook has vetted the syntax. */
	if (!SplitIdentifierString(raw, ',', &names))
		names = NIL;
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		ListCell   *lc2;
		bool		seen = false;

		foreach(lc2, unique)
		{
			if (strcmp((char *) lfirst(lc2), name) == 0)
				seen = true;
		}
		if (!seen)
			unique = lappend(unique, name);
	}

	launcher_forget_unlisted(shared, unique);
	dbs = launcher_read_databases(cxt, &ndbs, role, &roleid, &role_ok);

	foreach(lc, unique)
	{
		char	   *name = (char *) lfirst(lc);
		int			slotno;
		int			i;
		uint32		generation;

		CHECK_FOR_INTERRUPTS();

		slotno = launcher_slot(shared, name);
		if (slotno < 0)
		{
			if (!launcher_warned_slots)
				ereport(LOG,
						(errmsg("harbor_orm sweeper cannot track database \"%s\"", name),
						 errdetail("The status area holds %d databases, dynamic sweepers included.",
								   HARBOR_SWEEPER_MAX_SLOTS)));
			launcher_warned_slots = true;
			continue;
		}
		SpinLockAcquire(&shared->mutex);
		generation = shared->slots[slotno].generation;
		SpinLockRelease(&shared->mutex);

		for (i = 0; i < ndbs; i++)
		{
			if (strcmp(NameStr(dbs[i].name), name) == 0)
				break;
		}
		if (i == ndbs)
		{
			if (slot_set_state(&shared->slots[slotno], generation, HSS_NO_DATABASE, NULL))
				log_state(name, HSS_NO_DATABASE, NULL);
			continue;
		}
		if (!dbs[i].allowconn)
		{
			if (slot_set_state(&shared->slots[slotno], generation, HSS_NO_CONNECT, NULL))
				log_state(name, HSS_NO_CONNECT, NULL);
			continue;
		}
		if (!role_ok)
		{
			if (slot_set_state(&shared->slots[slotno], generation, HSS_BAD_ROLE, NULL))
				log_state(name, HSS_BAD_ROLE, role);
			continue;
		}
		launcher_sweep_database(shared, slotno, dbs[i].oid, roleid, name);
	}
}

/* Marks every launcher-served database as disabled, logging the change once. */
static void
launcher_set_disabled(HarborSweeperShared *shared, bool disabled)
{
	int			i;

	if (disabled == launcher_was_disabled)
		return;
	launcher_was_disabled = disabled;
	ereport(LOG,
			(errmsg(disabled ? "harbor_orm sweeper is disabled by harbor_orm.sweeper_enabled"
					: "harbor_orm sweeper is enabled")));
	if (!disabled)
		return;
	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS; i++)
	{
		if (shared->slots[i].in_use && !shared->slots[i].dynamic)
			shared->slots[i].state = HSS_DISABLED;
	}
	SpinLockRelease(&shared->mutex);
}

void
harbor_sweeper_launcher_main(Datum arg)
{
	HarborSweeperShared *shared;
	MemoryContext round_cxt;
	TimestampTz last_round = 0;
	bool		ran_once = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* No database: only shared catalogs are read. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	shared = harbor_sweeper_shmem();
	SpinLockAcquire(&shared->mutex);
	shared->launcher_pid = MyProcPid;
	shared->launcher_started = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
	on_shmem_exit(launcher_detach, (Datum) 0);

	round_cxt = AllocSetContextCreate(TopMemoryContext,
									  "harbor_orm sweeper round",
									  ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("harbor_orm sweeper launcher started"),
			 errdetail("Databases: %s; interval: %d s; batch size: %d.",
					   harbor_sweeper_databases, harbor_sweep_interval,
					   harbor_sweep_batch_size)));
	launcher_check_role_setting();

	for (;;)
	{
		long		timeout = -1;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			launcher_check_role_setting();
		}

		launcher_set_disabled(shared, !harbor_sweeper_enabled);
		if (harbor_sweeper_enabled)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz next = TimestampTzPlusMilliseconds(last_round,
														   (int64) harbor_sweep_interval * 1000);

			/*
			 * A round starts an interval after the previous one ended, so a
			 * round longer than the interval is not followed by another at
			 * once; recomputed every time, so a reloaded interval applies
			 * without waiting for the old one.
			 */
			if (!ran_once || now >= next)
			{
				MemoryContext oldcxt;

				ran_once = true;
				MemoryContextReset(round_cxt);
				oldcxt = MemoryContextSwitchTo(round_cxt);
				launcher_round(shared, round_cxt);
				MemoryContextSwitchTo(oldcxt);
				last_round = GetCurrentTimestamp();
				continue;
			}
			timeout = TimestampDifferenceMilliseconds(now, next);
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout >= 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
