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
#include "executor/spi.h"
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
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "harbor_orm.h"
#include "sweeper.h"

/*
 * Delay before the postmaster restarts a launcher that exited with an
 * error or was terminated.  After a crash of any process, crash recovery
 * restarts it at once.  Documented in docs/sweeper.md.
 */
#define HARBOR_LAUNCHER_RESTART_SECONDS 5

/* How often a dynamic worker checks, between rounds, whether to step aside. */
#define HARBOR_IDLE_PROBE_MS		250

/* The two units of work, each one call per transaction. */
typedef enum SweepKind
{
	SWEEP_RELEASE,
	SWEEP_PURGE
} SweepKind;

static const char *const sweep_sql[] = {
	"SELECT harbor._sweep_batch($1)",
	"SELECT harbor._purge_closed($1)"
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
	ROUND_YIELDED,
	ROUND_STOPPED
} RoundEnd;

/* Worker state, per process. */
static HarborSweeperArgs my_args;
static HarborSweeperSlot *my_slot = NULL;
static char *my_dbname = NULL;
static SPIPlanPtr sweep_plan[2];

/* Launcher state, per process. */
static bool launcher_warned_role = false;
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
	stop = my_slot->generation != my_args.generation || my_slot->stop_requested;
	SpinLockRelease(&shared->mutex);
	return stop;
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

/* One batch in its own transaction; returns the rows it handled. */
static int64
run_one_batch(SweepKind kind, int batch_size)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int64		n = 0;
	int			ret;

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, sweep_sql[kind]);

	if (sweep_plan[kind] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sweep_sql[kind], 1, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sweep_sql[kind], SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		sweep_plan[kind] = plan;
	}

	values[0] = Int32GetDatum(batch_size);
	ret = SPI_execute_plan(sweep_plan[kind], values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 sweep_sql[kind], SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		if (!isnull)
			n = SPI_gettypeid(SPI_tuptable->tupdesc, 1) == INT4OID ?
				DatumGetInt32(d) : DatumGetInt64(d);
	}

	SPI_finish();
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
 * Calls one batch function until it returns less than half a batch.  An
 * error aborts that batch's transaction only; it is recorded, and logged
 * with its context unless the previous round failed the same way.
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

			CHECK_FOR_INTERRUPTS();
			worker_reload_config();
			if (stop_requested())
			{
				end = ROUND_STOPPED;
				break;
			}
			batch_size = harbor_sweep_batch_size;

			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			if (!database_is_free(true))
			{
				CommitTransactionCommand();
				end = ROUND_YIELDED;
				break;
			}
			n = run_one_batch(kind, batch_size);
			CommitTransactionCommand();
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

		error_context_stack = errcallback.previous;
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);

		if (slot_set_state(my_slot, my_args.generation, HSS_ERROR, edata->message))
		{
			char	   *message = edata->message;

			edata->elevel = LOG;
			edata->message = psprintf("harbor_orm sweeper could not finish its round in database \"%s\": %s",
									  my_dbname, message);
			pfree(message);
			ThrowErrorData(edata);
		}
		FreeErrorData(edata);
		end = ROUND_FAILED;
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
	if (end == ROUND_DONE || end == ROUND_FAILED)
	{
		RoundEnd	purge_end = run_batches(SWEEP_PURGE);

		if (end == ROUND_DONE)
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
		end == ROUND_STOPPED ? HSS_STOPPED : HSS_ERROR;
	if (state != HSS_ERROR &&
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

	/* A slot reused since this worker was requested means it is not wanted. */
	SpinLockAcquire(&shared->mutex);
	valid = my_slot->in_use && my_slot->generation == my_args.generation &&
		!my_slot->stop_requested;
	if (valid)
	{
		my_slot->pid = MyProcPid;
		my_slot->round_finished = false;
	}
	SpinLockRelease(&shared->mutex);
	if (!valid)
		proc_exit(0);
	on_shmem_exit(worker_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(my_args.dboid, my_args.roleid, 0);

	/* Nothing a user creates may be picked up by name. */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
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
		if (my_slot->generation == my_args.generation)
			my_slot->round_finished = true;
		SpinLockRelease(&shared->mutex);
		proc_exit(0);
	}

	ereport(LOG,
			(errmsg("harbor_orm sweeper started for database \"%s\"", my_dbname)));
	for (;;)
	{
		RoundEnd	end = worker_round();

		if (end == ROUND_DONE || end == ROUND_FAILED)
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

/* Says once (and again after each change) that no role is configured. */
static void
launcher_check_role_setting(void)
{
	bool		unset = harbor_sweeper_role == NULL || harbor_sweeper_role[0] == '\0';

	if (unset && !launcher_warned_role)
		ereport(WARNING,
				(errmsg("harbor_orm sweeper acts as the bootstrap superuser"),
				 errdetail("harbor_orm.sweeper_role is not set."),
				 errhint("Set harbor_orm.sweeper_role to a role that has only the privileges the sweep needs (see the harbor_orm documentation).")));
	launcher_warned_role = unset;
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

/* Runs one worker for one database and waits until it has exited. */
static void
launcher_sweep_database(HarborSweeperShared *shared, int slotno, Oid dboid,
						Oid roleid, const char *dbname)
{
	HarborSweeperSlot *slot = &shared->slots[slotno];
	HarborSweeperArgs args;
	BackgroundWorkerHandle *handle;
	bool		finished;

	memset(&args, 0, sizeof(args));
	SpinLockAcquire(&shared->mutex);
	slot->dboid = dboid;
	slot->roleid = roleid;
	slot->round_finished = false;
	slot->exited = false;
	args.generation = slot->generation;
	SpinLockRelease(&shared->mutex);
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

		CHECK_FOR_INTERRUPTS();
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			break;
		/* The postmaster sets our latch when the worker stops. */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	pfree(handle);
	pgstat_report_activity(STATE_IDLE, NULL);

	SpinLockAcquire(&shared->mutex);
	finished = slot->round_finished || slot->generation != args.generation;
	SpinLockRelease(&shared->mutex);
	if (!finished &&
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
