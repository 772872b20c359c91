/*-------------------------------------------------------------------------
 *
 * sweeper_status.c
 *	  The expiry sweeper's shared-memory status and its SQL interface:
 *	  harbor.sweeper_status(), harbor.start_sweeper(), harbor.stop_sweeper().
 *
 * The status lives in one small struct in the main shared-memory segment,
 * so every database of the cluster sees every database's sweeper.  With
 * harbor_orm preloaded its space is reserved at server start; without, it
 * is carved from the segment's spare space the first time a backend or a
 * dynamic worker needs it (ShmemInitStruct after start-up), which the
 * segment's slack comfortably holds.  A spinlock protects it: every access
 * copies or updates a few fields.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/varlena.h"

#include "harbor_orm.h"
#include "sweeper.h"

PG_FUNCTION_INFO_V1(harbor_sweeper_status);
PG_FUNCTION_INFO_V1(harbor_start_sweeper);
PG_FUNCTION_INFO_V1(harbor_stop_sweeper);

/* How long stop_sweeper() waits for the worker to be gone. */
#define HARBOR_STOP_WAIT_MS			10000

static HarborSweeperShared *sweeper_shared = NULL;

#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* ---------------------------------------------------------------------
 * Shared memory.
 * ---------------------------------------------------------------------
 */

Size
harbor_sweeper_shmem_size(void)
{
	return MAXALIGN(sizeof(HarborSweeperShared));
}

/* Attaches to the status area, creating it on first use. */
HarborSweeperShared *
harbor_sweeper_shmem(void)
{
	HarborSweeperShared *shared;
	bool		found;

	if (sweeper_shared != NULL)
		return sweeper_shared;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("harbor_orm sweeper", harbor_sweeper_shmem_size(), &found);
	if (!found)
	{
		memset(shared, 0, harbor_sweeper_shmem_size());
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);

	sweeper_shared = shared;
	return shared;
}

#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
static void
sweeper_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(harbor_sweeper_shmem_size());
}
#endif

static void
sweeper_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	/* After a crash the segment is new: forget the old address. */
	sweeper_shared = NULL;
	(void) harbor_sweeper_shmem();
}

/* Reserves the status area; only while preloading. */
void
harbor_sweeper_status_init(void)
{
#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sweeper_shmem_request;
#else
	RequestAddinShmemSpace(harbor_sweeper_shmem_size());
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sweeper_shmem_startup;
}

const char *
harbor_sweeper_state_name(HarborSweeperState state)
{
	switch (state)
	{
		case HSS_NEW:
			return "new";
		case HSS_OK:
			return "ok";
		case HSS_ERROR:
			return "error";
		case HSS_NO_DATABASE:
			return "no_database";
		case HSS_NO_CONNECT:
			return "no_connections";
		case HSS_NO_EXTENSION:
			return "no_extension";
		case HSS_BAD_ROLE:
			return "bad_role";
		case HSS_NO_WORKER:
			return "no_worker";
		case HSS_YIELDED:
			return "yielded";
		case HSS_DISABLED:
			return "disabled";
		case HSS_STOPPED:
			return "stopped";
		case HSS_LOCK_TIMEOUT:
			return "lock_timeout";
	}
	return "unknown";
}

/*
 * Whether the preloaded launcher is running and lists the database in
 * harbor_orm.sweeper_databases (as this backend reads the setting).
 */
bool
harbor_sweeper_launcher_serves(const char *dbname)
{
	HarborSweeperShared *shared = harbor_sweeper_shmem();
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		running;
	bool		listed = false;

	SpinLockAcquire(&shared->mutex);
	running = shared->launcher_pid != 0;
	SpinLockRelease(&shared->mutex);
	if (!running || harbor_sweeper_databases == NULL)
		return false;

	raw = pstrdup(harbor_sweeper_databases);
	if (SplitIdentifierString(raw, ',', &names))
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), dbname) == 0)
				listed = true;
		}
	}
	return listed;
}

/* ---------------------------------------------------------------------
 * harbor.sweeper_status()
 * ---------------------------------------------------------------------
 */

#define SWEEPER_STATUS_COLS 15

Datum
harbor_sweeper_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HarborSweeperShared *shared = harbor_sweeper_shmem();
	HarborSweeperSlot *slots;
	pid_t		launcher_pid;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	/* Copy under the spinlock, build tuples after. */
	slots = palloc(sizeof(HarborSweeperSlot) * HARBOR_SWEEPER_MAX_SLOTS);
	SpinLockAcquire(&shared->mutex);
	memcpy(slots, shared->slots, sizeof(HarborSweeperSlot) * HARBOR_SWEEPER_MAX_SLOTS);
	launcher_pid = shared->launcher_pid;
	SpinLockRelease(&shared->mutex);

	for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS; i++)
	{
		HarborSweeperSlot *slot = &slots[i];
		Datum		values[SWEEPER_STATUS_COLS];
		bool		nulls[SWEEPER_STATUS_COLS];
		int			c = 0;

		if (!slot->in_use)
			continue;
		memset(nulls, 0, sizeof(nulls));

		values[c++] = NameGetDatum(&slot->dbname);
		values[c++] = CStringGetTextDatum(slot->dynamic ? "dynamic" : "launcher");
		nulls[c] = slot->pid == 0;
		values[c++] = Int32GetDatum(slot->pid);
		nulls[c] = slot->dynamic || launcher_pid == 0;
		values[c++] = Int32GetDatum(launcher_pid);
		values[c++] = CStringGetTextDatum(slot->sweeping ? "sweeping" :
										  harbor_sweeper_state_name(slot->state));
		nulls[c] = slot->last_start == 0;
		values[c++] = TimestampTzGetDatum(slot->last_start);
		nulls[c] = slot->last_end == 0 || slot->sweeping;
		values[c++] = TimestampTzGetDatum(slot->last_end);
		values[c++] = Int64GetDatum(slot->released_last);
		values[c++] = Int64GetDatum(slot->purged_last);
		values[c++] = Int64GetDatum(slot->released_total);
		values[c++] = Int64GetDatum(slot->purged_total);
		values[c++] = Int64GetDatum(slot->rounds);
		values[c++] = Int64GetDatum(slot->errors);
		nulls[c] = slot->last_error[0] == '\0';
		values[c++] = CStringGetTextDatum(slot->last_error);
		nulls[c] = slot->last_error_at == 0;
		values[c++] = TimestampTzGetDatum(slot->last_error_at);
		Assert(c == SWEEPER_STATUS_COLS);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * harbor.start_sweeper() and harbor.stop_sweeper()
 * ---------------------------------------------------------------------
 */

/*
 * Serialises start and stop within a database until the caller's
 * transaction ends, so two sessions cannot start two workers.
 */
static void
lock_sweeper_control(void)
{
	Oid			extoid = get_extension_oid("harbor_orm", false);

	LockDatabaseObject(ExtensionRelationId, extoid, 0, ExclusiveLock);
}

/*
 * Pid of the worker that holds slotno with the given generation, or 0 once
 * it has gone (its exit callback clears the pid; a crash resets the whole
 * status area).
 */
static pid_t
slot_pid(HarborSweeperShared *shared, int slotno, uint32 generation)
{
	pid_t		pid = 0;

	SpinLockAcquire(&shared->mutex);
	if (shared->slots[slotno].in_use && shared->slots[slotno].generation == generation)
		pid = shared->slots[slotno].pid;
	SpinLockRelease(&shared->mutex);
	return pid;
}

/* The dynamic slot of the current database, or -1; spinlock held by caller. */
static int
find_dynamic_slot(HarborSweeperShared *shared)
{
	int			i;

	for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS; i++)
	{
		HarborSweeperSlot *slot = &shared->slots[i];

		if (slot->in_use && slot->dynamic && slot->dboid == MyDatabaseId)
			return i;
	}
	return -1;
}

Datum
harbor_start_sweeper(PG_FUNCTION_ARGS)
{
	HarborSweeperShared *shared;
	HarborSweeperArgs args;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	char	   *dbname = get_database_name(MyDatabaseId);
	Oid			roleid = GetUserId();
	HeapTuple	roletup;
	bool		canlogin;
	pid_t		pid = 0;
	int			slotno;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot start the sweeper while the server is in recovery"),
				 errdetail("A standby's reservations are swept by its primary.")));

	/* The session's role can have been dropped since it logged in. */
	roletup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(roletup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", roleid)));
	canlogin = ((Form_pg_authid) GETSTRUCT(roletup))->rolcanlogin;
	ReleaseSysCache(roletup);
	if (!canlogin)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot start the sweeper", GetUserNameFromId(roleid, false)),
				 errdetail("The sweeper connects as the role that starts it, and this role does not have the LOGIN attribute."),
				 errhint("Call harbor.start_sweeper() as a role that can log in.")));

	lock_sweeper_control();
	shared = harbor_sweeper_shmem();

	if (harbor_sweeper_launcher_serves(dbname))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("database \"%s\" is already served by the harbor_orm sweeper launcher", dbname),
				 errdetail("It is listed in harbor_orm.sweeper_databases."),
				 errhint("Use harbor.sweeper_status() to see its sweeps.")));

	SpinLockAcquire(&shared->mutex);
	slotno = find_dynamic_slot(shared);
	if (slotno >= 0)
		pid = shared->slots[slotno].pid;
	SpinLockRelease(&shared->mutex);
	if (pid != 0)
	{
		ereport(NOTICE,
				(errmsg("the sweeper of database \"%s\" is already running", dbname)));
		PG_RETURN_INT32(pid);
	}

	/* Claim a slot: this database's old one, a free one, or a stopped one. */
	SpinLockAcquire(&shared->mutex);
	if (slotno < 0)
	{
		int			i;

		for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS && slotno < 0; i++)
			if (!shared->slots[i].in_use)
				slotno = i;
		for (i = 0; i < HARBOR_SWEEPER_MAX_SLOTS && slotno < 0; i++)
			if (shared->slots[i].dynamic && shared->slots[i].pid == 0)
				slotno = i;
	}
	if (slotno >= 0)
	{
		HarborSweeperSlot *slot = &shared->slots[slotno];
		uint32		generation = slot->generation + 1;

		memset(slot, 0, sizeof(HarborSweeperSlot));
		slot->in_use = true;
		slot->dynamic = true;
		slot->generation = generation;
		namestrcpy(&slot->dbname, dbname);
		slot->dboid = MyDatabaseId;
		slot->roleid = roleid;
		args.generation = generation;
	}
	SpinLockRelease(&shared->mutex);
	if (slotno < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the sweeper: %d databases already have one",
						HARBOR_SWEEPER_MAX_SLOTS)));

	args.slot = slotno;
	args.dboid = MyDatabaseId;
	args.roleid = roleid;
	args.dynamic = true;
	if (!harbor_sweeper_register_worker(&args, dbname, &handle))
	{
		SpinLockAcquire(&shared->mutex);
		if (shared->slots[slotno].generation == args.generation)
			shared->slots[slotno].in_use = false;
		SpinLockRelease(&shared->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the sweeper: no background worker slot is free"),
				 errdetail("All %d background worker slots (max_worker_processes) are in use.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes (this needs a server restart) or stop another background worker.")));
	}

	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status == BGWH_POSTMASTER_DIED)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("could not start the sweeper: the postmaster died")));
	if (status != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the sweeper of database \"%s\" exited as soon as it started", dbname),
				 errhint("The server log has the reason.")));

	/* Unless the worker has already come and gone, it is the one running. */
	SpinLockAcquire(&shared->mutex);
	if (shared->slots[slotno].generation == args.generation &&
		!shared->slots[slotno].exited)
		shared->slots[slotno].pid = pid;
	SpinLockRelease(&shared->mutex);

	PG_RETURN_INT32(pid);
}

Datum
harbor_stop_sweeper(PG_FUNCTION_ARGS)
{
	HarborSweeperShared *shared;
	char	   *dbname = get_database_name(MyDatabaseId);
	Oid			roleid = InvalidOid;
	uint32		generation = 0;
	pid_t		pid = 0;
	int			slotno;
	TimestampTz deadline;

	/* Nothing sweeps during recovery (start_sweeper refuses there). */
	if (RecoveryInProgress())
		PG_RETURN_BOOL(false);

	lock_sweeper_control();
	shared = harbor_sweeper_shmem();

	SpinLockAcquire(&shared->mutex);
	slotno = find_dynamic_slot(shared);
	if (slotno >= 0)
	{
		pid = shared->slots[slotno].pid;
		roleid = shared->slots[slotno].roleid;
		generation = shared->slots[slotno].generation;
	}
	SpinLockRelease(&shared->mutex);
	if (pid == 0)
		PG_RETURN_BOOL(false);

	/* The rules of pg_terminate_backend(), applied to the role it acts as. */
	if (superuser_arg(roleid) && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to stop the sweeper of database \"%s\"", dbname),
				 errdetail("Only superusers can stop a sweeper that acts as a superuser.")));
	if (!has_privs_of_role(GetUserId(), roleid) &&
		!has_privs_of_role(GetUserId(), ROLE_PG_SIGNAL_BACKEND))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to stop the sweeper of database \"%s\"", dbname),
				 errdetail("Only roles with the privileges of the role the sweeper acts as, or of pg_signal_backend, can stop it.")));

	SpinLockAcquire(&shared->mutex);
	if (shared->slots[slotno].generation == generation)
		shared->slots[slotno].stop_requested = true;
	SpinLockRelease(&shared->mutex);

	/* SIGTERM also ends a batch waiting on a row lock this session holds. */
	if (kill(pid, SIGTERM) != 0 && errno != ESRCH)
		ereport(WARNING,
				(errmsg("could not send a signal to the sweeper (process %d): %m", (int) pid)));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HARBOR_STOP_WAIT_MS);
	while (slot_pid(shared, slotno, generation) == pid)
	{
		CHECK_FOR_INTERRUPTS();
		if (GetCurrentTimestamp() >= deadline)
		{
			ereport(WARNING,
					(errmsg("the sweeper (process %d) has not exited yet", (int) pid)));
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_RETURN_BOOL(true);
}
