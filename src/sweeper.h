/*-------------------------------------------------------------------------
 *
 * sweeper.h
 *	  The expiry sweeper: background worker processes (sweeper.c) and the
 *	  shared-memory status they report into (sweeper_status.c).
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_SWEEPER_H
#define HARBOR_SWEEPER_H

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"
#include "storage/spin.h"
#include "utils/guc.h"

/* Databases whose status is kept at once (launcher and dynamic together). */
#define HARBOR_SWEEPER_MAX_SLOTS	64

/* Longest error message kept in the status; the log has the full report. */
#define HARBOR_SWEEPER_ERRLEN		256

/* Outcome of the last round of a database, shown as sweeper_status().state. */
typedef enum HarborSweeperState
{
	HSS_NEW = 0,				/* no round yet */
	HSS_OK,						/* last round swept without error */
	HSS_ERROR,					/* last round failed; see last_error */
	HSS_NO_DATABASE,			/* no database of that name */
	HSS_NO_CONNECT,				/* database does not allow connections */
	HSS_NO_EXTENSION,			/* harbor_orm is not installed there */
	HSS_BAD_ROLE,				/* harbor_orm.sweeper_role cannot be used */
	HSS_NO_WORKER,				/* no background worker slot was free */
	HSS_YIELDED,				/* left for DROP / ALTER DATABASE */
	HSS_DISABLED,				/* harbor_orm.sweeper_enabled is off */
	HSS_STOPPED,				/* dynamic worker stopped */
	HSS_LOCK_TIMEOUT			/* round cut short: a table was locked */
} HarborSweeperState;

/* One database served by the launcher or by a dynamic worker. */
typedef struct HarborSweeperSlot
{
	bool		in_use;
	bool		dynamic;		/* started by harbor.start_sweeper() */
	uint32		generation;		/* bumped on every reuse of the slot */
	uint32		launch;			/* bumped on every worker the launcher starts */
	NameData	dbname;
	Oid			dboid;			/* InvalidOid while the database is unknown */
	Oid			roleid;			/* role a dynamic worker acts as */
	pid_t		pid;			/* process sweeping now (or dynamic worker) */
	bool		sweeping;		/* a round is in progress */
	bool		stop_requested; /* harbor.stop_sweeper() was called */
	bool		round_finished; /* set by the worker at the end of a round */
	bool		exited;			/* the worker has gone */
	TimestampTz progress_at;	/* worker start, or its last finished batch */
	HarborSweeperState state;
	TimestampTz last_start;
	TimestampTz last_end;
	int64		released_last;
	int64		purged_last;
	int64		released_total;
	int64		purged_total;
	int64		rounds;
	int64		errors;
	TimestampTz last_error_at;
	char		last_error[HARBOR_SWEEPER_ERRLEN];
} HarborSweeperSlot;

typedef struct HarborSweeperShared
{
	slock_t		mutex;			/* protects everything below */
	pid_t		launcher_pid;
	TimestampTz launcher_started;
	HarborSweeperSlot slots[HARBOR_SWEEPER_MAX_SLOTS];
} HarborSweeperShared;

/* What the postmaster hands a sweeper worker in bgw_extra. */
typedef struct HarborSweeperArgs
{
	int			slot;
	uint32		generation;
	uint32		launch;			/* launcher workers: slot launch it belongs to */
	Oid			dboid;
	Oid			roleid;			/* InvalidOid: bootstrap superuser */
	bool		dynamic;		/* serve until stopped, not one round */
} HarborSweeperArgs;

/* GUCs of the sweeper's transactions, defined in harbor_orm.c */
extern int	harbor_sweep_lock_timeout;	/* ms, 0: no limit */
extern int	harbor_sweep_statement_timeout; /* ms */

/* sweeper.c */
extern void harbor_sweeper_init(void);
extern bool harbor_check_sweeper_databases(char **newval, void **extra, GucSource source);
extern bool harbor_sweeper_register_worker(const HarborSweeperArgs *args,
										   const char *dbname,
										   BackgroundWorkerHandle **handle);
extern PGDLLEXPORT void harbor_sweeper_launcher_main(Datum arg);
extern PGDLLEXPORT void harbor_sweeper_worker_main(Datum arg);

/* sweeper_status.c */
extern void harbor_sweeper_status_init(void);
extern Size harbor_sweeper_shmem_size(void);
extern HarborSweeperShared *harbor_sweeper_shmem(void);
extern const char *harbor_sweeper_state_name(HarborSweeperState state);
extern bool harbor_sweeper_launcher_serves(const char *dbname);

#endif							/* HARBOR_SWEEPER_H */
