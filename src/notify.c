/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Commit-time change notifications for mapped models.
 *
 * harbor.enable_change_notify(model) puts statement-level AFTER triggers
 * with transition tables on the model's table, one per event because
 * PostgreSQL refuses transition tables on multi-event triggers.  Each
 * firing reads the primary keys of the changed rows straight from the
 * transition tuplestore and queues NOTIFY payloads on channel
 * harbor_changes:
 *
 *	 {"model": "variants", "op": "update", "ids": [17, 42]}
 *
 * NOTIFY delivers at commit and drops the queue on rollback, which is
 * exactly "invalidate the cache on successful commit".  One statement
 * gives one payload, split into several when the ids would pass the
 * payload limit.  The trigger runs on the reservation hot path, so it
 * avoids SPI: the key columns come from the relcache, the values from the
 * tuplestore, and the JSON is built in one buffer.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/tuplestore.h"

#include "harbor_orm.h"
#include "registry.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_notify_changes);
PG_FUNCTION_INFO_V1(harbor_enable_change_notify);
PG_FUNCTION_INFO_V1(harbor_disable_change_notify);

#define NOTIFY_CHANNEL "harbor_changes"

/*
 * async.c rejects payloads of BLCKSZ - NAMEDATALEN - 128 bytes or more
 * (8000 with default BLCKSZ); stay strictly below.
 */
#define NOTIFY_PAYLOAD_LIMIT (BLCKSZ - NAMEDATALEN - 128 - 1)

/* One trigger per event; names are fixed so that enabling is idempotent. */
typedef struct NotifyTrigger
{
	const char *name;
	const char *event;
	const char *referencing;
} NotifyTrigger;

static const NotifyTrigger notify_triggers[] = {
	{"harbor_notify_insert", "INSERT", "REFERENCING NEW TABLE AS harbor_new"},
	{"harbor_notify_update", "UPDATE", "REFERENCING OLD TABLE AS harbor_old NEW TABLE AS harbor_new"},
	{"harbor_notify_delete", "DELETE", "REFERENCING OLD TABLE AS harbor_old"},
	{"harbor_notify_truncate", "TRUNCATE", ""},
};

#define N_NOTIFY_TRIGGERS lengthof(notify_triggers)

/* What the trigger needs to render one primary key. */
typedef struct KeyRenderer
{
	int			nkeys;
	AttrNumber *attnums;
	FmgrInfo   *outfuncs;
	bool	   *numeric;		/* integer types go out as JSON numbers */
} KeyRenderer;

/*
 * Collects ids into payloads of at most NOTIFY_PAYLOAD_LIMIT bytes and
 * queues each full one.
 */
typedef struct PayloadBuilder
{
	StringInfoData buf;
	int			header_len;		/* length of {"model": ..., "ids": [ */
	int			nids;
	bool		overflow_sent;
} PayloadBuilder;

static void
payload_start(PayloadBuilder *pb, const char *model, const char *op)
{
	initStringInfo(&pb->buf);
	appendStringInfoString(&pb->buf, "{\"model\": ");
	escape_json(&pb->buf, model);
	appendStringInfo(&pb->buf, ", \"op\": \"%s\", \"ids\": [", op);
	pb->header_len = pb->buf.len;
	pb->nids = 0;
	pb->overflow_sent = false;
}

static void
payload_flush(PayloadBuilder *pb)
{
	if (pb->nids == 0)
		return;
	appendStringInfoString(&pb->buf, "]}");
	Async_Notify(NOTIFY_CHANNEL, pb->buf.data);
	pb->buf.len = pb->header_len;
	pb->buf.data[pb->buf.len] = '\0';
	pb->nids = 0;
}

/*
 * Queue a payload whose "ids" is null: the listener learns that the model
 * changed but not which rows, and must treat all of it as changed.  Used
 * for TRUNCATE and for a key too long to fit in any payload.
 */
static void
payload_send_null(PayloadBuilder *pb)
{
	StringInfoData msg;

	initStringInfo(&msg);
	appendBinaryStringInfo(&msg, pb->buf.data, pb->header_len - 1);
	appendStringInfoString(&msg, "null}");
	Async_Notify(NOTIFY_CHANNEL, msg.data);
	pfree(msg.data);
	pb->overflow_sent = true;
}

static void
payload_add(PayloadBuilder *pb, const char *id, int idlen)
{
	/* ", " + id + "]}" must fit below the limit */
	if (pb->header_len + idlen + 2 >= NOTIFY_PAYLOAD_LIMIT)
	{
		if (!pb->overflow_sent)
			payload_send_null(pb);
		return;
	}
	if (pb->buf.len + 2 + idlen + 2 >= NOTIFY_PAYLOAD_LIMIT)
		payload_flush(pb);
	if (pb->nids > 0)
		appendStringInfoString(&pb->buf, ", ");
	appendBinaryStringInfo(&pb->buf, id, idlen);
	pb->nids++;
}

/*
 * The primary key columns of the table, from its relcache entry.  Returns
 * false when the table has no primary key any more (it was dropped by an
 * ALTER TABLE after notifications were enabled).
 */
static bool
key_renderer_init(KeyRenderer *kr, Relation rel)
{
	Oid			pkindex = RelationGetPrimaryKeyIndex(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	Relation	idx;

	if (!OidIsValid(pkindex))
		return false;
	idx = index_open(pkindex, AccessShareLock);
	kr->nkeys = IndexRelationGetNumberOfKeyAttributes(idx);
	kr->attnums = palloc(sizeof(AttrNumber) * kr->nkeys);
	kr->outfuncs = palloc(sizeof(FmgrInfo) * kr->nkeys);
	kr->numeric = palloc(sizeof(bool) * kr->nkeys);
	for (int i = 0; i < kr->nkeys; i++)
	{
		AttrNumber	attnum = idx->rd_index->indkey.values[i];
		Oid			typid = TupleDescAttr(desc, attnum - 1)->atttypid;
		Oid			outfunc;
		bool		isvarlena;

		kr->attnums[i] = attnum;
		getTypeOutputInfo(typid, &outfunc, &isvarlena);
		fmgr_info(outfunc, &kr->outfuncs[i]);
		kr->numeric[i] = (typid == INT2OID || typid == INT4OID ||
						  typid == INT8OID || typid == OIDOID);
	}
	index_close(idx, AccessShareLock);
	return true;
}

/* Render the key of the row in slot as JSON into out (reset first). */
static void
render_key(KeyRenderer *kr, TupleTableSlot *slot, StringInfo out)
{
	resetStringInfo(out);
	if (kr->nkeys > 1)
		appendStringInfoChar(out, '[');
	for (int i = 0; i < kr->nkeys; i++)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, kr->attnums[i], &isnull);

		if (i > 0)
			appendStringInfoString(out, ", ");
		if (isnull)
			appendStringInfoString(out, "null");
		else
		{
			char	   *s = OutputFunctionCall(&kr->outfuncs[i], d);

			if (kr->numeric[i])
				appendStringInfoString(out, s);
			else
				escape_json(out, s);
			pfree(s);
		}
	}
	if (kr->nkeys > 1)
		appendStringInfoChar(out, ']');
}

/*
 * Position a private read pointer at the start of a transition table and
 * make it the active one, so that other triggers reading the same
 * tuplestore are not disturbed.
 *
 * tuplestore_rescan() may only rewind a read pointer that was allocated
 * with EXEC_FLAG_REWIND (it Asserts so in assert-enabled builds).  Asking
 * for it here is allowed although the store already holds tuples: trigger.c
 * creates transition tables with tuplestore_begin_heap(false, ...), whose
 * eflags already include EXEC_FLAG_REWIND, so this is no increase of the
 * store's requirements ("too late to require new tuplestore eflags").  The
 * new pointer starts as a copy of read pointer 0, which may be anywhere,
 * hence the rescan.  nodeNamedtuplestorescan.c reads transition tables the
 * same way.  Each caller selects its own pointer before reading, so the
 * active pointer need not be restored afterwards.
 */
static void
tuplestore_start(Tuplestorestate *ts)
{
	int			ptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);

	tuplestore_select_read_pointer(ts, ptr);
	tuplestore_rescan(ts);
}

/*
 * harbor._notify_changes(model): statement-level AFTER trigger.
 */
Datum
harbor_notify_changes(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	const char *op;
	Tuplestorestate *primary;
	Tuplestorestate *old_ts = NULL;
	PayloadBuilder pb;
	KeyRenderer kr;
	TupleTableSlot *slot;
	TupleTableSlot *old_slot = NULL;
	StringInfoData id;
	StringInfoData old_id;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._notify_changes() must be called as a statement-level AFTER trigger")));
	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._notify_changes() needs the model name as its only argument"),
				 errhint("Create the triggers with harbor.enable_change_notify().")));
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		op = "insert";
		primary = trigdata->tg_newtable;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		op = "update";
		primary = trigdata->tg_newtable;
		old_ts = trigdata->tg_oldtable;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		op = "delete";
		primary = trigdata->tg_oldtable;
	}
	else
	{
		op = "truncate";
		primary = NULL;
	}

	payload_start(&pb, trigger->tgargs[0], op);
	if (primary == NULL || !key_renderer_init(&kr, rel))
	{
		/* TRUNCATE, or a table that lost its key: "everything changed" */
		if (primary == NULL || tuplestore_tuple_count(primary) > 0)
			payload_send_null(&pb);
		pfree(pb.buf.data);
		return PointerGetDatum(NULL);
	}
	if (tuplestore_tuple_count(primary) == 0)
	{
		pfree(pb.buf.data);
		return PointerGetDatum(NULL);
	}

	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	tuplestore_start(primary);
	if (old_ts != NULL)
	{
		old_slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
		tuplestore_start(old_ts);
	}
	initStringInfo(&id);
	initStringInfo(&old_id);

	while (tuplestore_gettupleslot(primary, true, false, slot))
	{
		CHECK_FOR_INTERRUPTS();
		render_key(&kr, slot, &id);
		payload_add(&pb, id.data, id.len);

		/*
		 * The old and new transition tables hold the rows of an UPDATE in
		 * the same order; a changed key is reported under both values so
		 * that a cache drops the old entry too.
		 */
		if (old_slot != NULL &&
			tuplestore_gettupleslot(old_ts, true, false, old_slot))
		{
			render_key(&kr, old_slot, &old_id);
			if (old_id.len != id.len || memcmp(old_id.data, id.data, id.len) != 0)
				payload_add(&pb, old_id.data, old_id.len);
		}
	}
	payload_flush(&pb);

	ExecDropSingleTupleTableSlot(slot);
	if (old_slot != NULL)
		ExecDropSingleTupleTableSlot(old_slot);
	pfree(id.data);
	pfree(old_id.data);
	pfree(pb.buf.data);
	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------------------
 * Enabling and disabling
 * ---------------------------------------------------------------------
 */

/* Which of the notify triggers exist on relid.  Needs SPI. */
static void
existing_triggers(Oid relid, bool *exists)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	harbor_spi_exec("SELECT tgname::text FROM pg_catalog.pg_trigger"
					" WHERE tgrelid = $1 AND tgname::text LIKE 'harbor\\_notify\\_%'",
					1, argtypes, values, NULL, true, 0);
	for (int i = 0; i < (int) N_NOTIFY_TRIGGERS; i++)
	{
		exists[i] = false;
		for (uint64 r = 0; r < SPI_processed; r++)
			if (strcmp(harbor_spi_getcstring(r, 1), notify_triggers[i].name) == 0)
				exists[i] = true;
	}
}

static text *
model_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model must not be null")));
	return PG_GETARG_TEXT_PP(0);
}

/*
 * harbor.enable_change_notify(model text) RETURNS void
 *
 * Creates the missing triggers; those already there are replaced so that
 * they carry the model's current name.  Runs with the caller's
 * privileges: creating a trigger needs the TRIGGER privilege on the table.
 */
Datum
harbor_enable_change_notify(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(model_arg(fcinfo));
	HarborModel *model = harbor_model_lookup(name, false);
	char	   *relname = harbor_quoted_relname(model->relid);
	char	   *literal = quote_literal_cstr(model->name);

	SPI_connect();
	for (int i = 0; i < (int) N_NOTIFY_TRIGGERS; i++)
	{
		const NotifyTrigger *t = &notify_triggers[i];
		char	   *sql;

		sql = psprintf("CREATE OR REPLACE TRIGGER %s AFTER %s ON %s %s"
					   " FOR EACH STATEMENT EXECUTE FUNCTION harbor._notify_changes(%s)",
					   quote_identifier(t->name), t->event, relname,
					   t->referencing, literal);
		harbor_spi_exec(sql, 0, NULL, NULL, NULL, false, 0);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * harbor.disable_change_notify(model text) RETURNS void
 *
 * Drops the triggers that exist; disabling a model that was never enabled
 * does nothing.
 */
Datum
harbor_disable_change_notify(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(model_arg(fcinfo));
	HarborModel *model = harbor_model_lookup(name, false);
	char	   *relname = harbor_quoted_relname(model->relid);
	bool		exists[N_NOTIFY_TRIGGERS];

	SPI_connect();
	existing_triggers(model->relid, exists);
	for (int i = 0; i < (int) N_NOTIFY_TRIGGERS; i++)
	{
		if (!exists[i])
			continue;
		harbor_spi_exec(psprintf("DROP TRIGGER %s ON %s",
								 quote_identifier(notify_triggers[i].name), relname),
						0, NULL, NULL, NULL, false, 0);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
