/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Commit-time change notifications for mapped models.
 *
 * harbor.enable_change_notify(model, channel, payload) puts statement-level
 * AFTER triggers with transition tables on the model's table, one per event
 * because PostgreSQL refuses transition tables on multi-event triggers.
 * Each firing queues NOTIFY payloads on the channel the enabler chose
 * (harbor_changes by default) in one of three shapes:
 *
 *	 none:	{"model": "variants", "op": "update"}
 *	 count: {"model": "variants", "op": "update", "count": 2}
 *	 keys:	{"model": "variants", "op": "update", "ids": [17, 42]}
 *
 * PostgreSQL has no privilege on LISTEN: every role that can connect to the
 * database receives every payload of a channel it names.  So the default is
 * "count", which tells nothing a role could not learn from the commit rate,
 * and the keys of the changed rows are sent only when the enabler asks for
 * them and could read all of them itself (see may_publish_keys).  The
 * choice is stored as the triggers' arguments (model, channel, payload), so
 * it survives pg_dump; triggers made by 0.1.0 carry only the model and send
 * "count" on harbor_changes.
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
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/tuplestore.h"

#include "harbor_orm.h"
#include "registry.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_notify_changes);
PG_FUNCTION_INFO_V1(harbor_enable_change_notify);
PG_FUNCTION_INFO_V1(harbor_disable_change_notify);

/* The channel when the enabler names none, and that of 0.1.0's triggers. */
#define NOTIFY_CHANNEL "harbor_changes"

/* What a payload carries besides the model and the operation. */
typedef enum NotifyPayload
{
	NOTIFY_PAYLOAD_NONE,
	NOTIFY_PAYLOAD_COUNT,
	NOTIFY_PAYLOAD_KEYS
} NotifyPayload;

static const char *const notify_payload_names[] = {"none", "count", "keys"};

#define NOTIFY_PAYLOAD_DEFAULT NOTIFY_PAYLOAD_COUNT

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
	const char *channel;
	StringInfoData buf;
	int			header_len;		/* length of {"model": ..., "ids": [ */
	int			nids;
	bool		overflow_sent;
} PayloadBuilder;

static void
payload_start(PayloadBuilder *pb, const char *channel, const char *model,
			  const char *op)
{
	pb->channel = channel;
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
	Async_Notify(pb->channel, pb->buf.data);
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
	Async_Notify(pb->channel, msg.data);
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
 * Queue the payload of the "none" and "count" shapes; count < 0 is sent as
 * null (TRUNCATE does not say how many rows it removed).
 */
static void
send_summary(const char *channel, const char *model, const char *op,
			 NotifyPayload payload, int64 count)
{
	StringInfoData msg;

	initStringInfo(&msg);
	appendStringInfoString(&msg, "{\"model\": ");
	escape_json(&msg, model);
	appendStringInfo(&msg, ", \"op\": \"%s\"", op);
	if (payload == NOTIFY_PAYLOAD_COUNT)
	{
		if (count < 0)
			appendStringInfoString(&msg, ", \"count\": null");
		else
			appendStringInfo(&msg, ", \"count\": " INT64_FORMAT, count);
	}
	appendStringInfoChar(&msg, '}');
	Async_Notify(channel, msg.data);
	pfree(msg.data);
}

/* "none", "count" or "keys"; false for anything else. */
static bool
parse_payload(const char *name, NotifyPayload *payload)
{
	for (int i = 0; i < (int) lengthof(notify_payload_names); i++)
	{
		if (strcmp(name, notify_payload_names[i]) == 0)
		{
			*payload = (NotifyPayload) i;
			return true;
		}
	}
	return false;
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
	const char *channel;
	NotifyPayload payload;
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
	if (trigger->tgnargs == 1)
	{
		/* made by 0.1.0: no keys any more, see docs/notify.md */
		channel = NOTIFY_CHANNEL;
		payload = NOTIFY_PAYLOAD_COUNT;
	}
	else if (trigger->tgnargs == 3 &&
			 parse_payload(trigger->tgargs[2], &payload))
		channel = trigger->tgargs[1];
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._notify_changes() needs the arguments model, channel and payload (none, count or keys)"),
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

	if (payload != NOTIFY_PAYLOAD_KEYS)
	{
		int64		count = primary ? tuplestore_tuple_count(primary) : -1;

		/* a statement that changed no row says nothing */
		if (count != 0)
			send_summary(channel, trigger->tgargs[0], op, payload, count);
		return PointerGetDatum(NULL);
	}

	payload_start(&pb, channel, trigger->tgargs[0], op);
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
 * May the current user have the keys of relid's changed rows sent to
 * every role that can connect?  Only if it could read all of them itself:
 * it owns the table (and so could also switch row-level security off), or
 * it has SELECT on the key columns and row-level security does not apply
 * to it.  Publishing what one can read adds no right; publishing what one
 * cannot read would.  The TRIGGER privilege alone is not enough.
 */
static void
check_may_publish_keys(HarborModel *model)
{
	Oid			relid = model->relid;
	Oid			userid = GetUserId();

	if (pg_class_ownercheck(relid, userid))
		return;
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to send the keys of table %s in change notifications",
						harbor_quoted_relname(relid)),
				 errdetail("Row-level security applies to you on this table, and any role that can connect can LISTEN to the notifications."),
				 errhint("Ask the table's owner, or use payload => 'count' or 'none'.")));
	if (pg_class_aclcheck(relid, userid, ACL_SELECT) == ACLCHECK_OK)
		return;
	for (int i = 0; i < model->npk; i++)
	{
		AttrNumber	attnum = get_attnum(relid, model->pk_columns[i]);

		if (attnum == InvalidAttrNumber ||
			pg_attribute_aclcheck(relid, attnum, userid, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to send the keys of table %s in change notifications",
							harbor_quoted_relname(relid)),
					 errdetail("You cannot read its key column %s, and any role that can connect can LISTEN to the notifications.",
							   quote_identifier(model->pk_columns[i])),
					 errhint("Ask the table's owner, or use payload => 'count' or 'none'.")));
	}
}

/*
 * harbor.enable_change_notify(model text, channel text DEFAULT
 *	   'harbor_changes', payload text DEFAULT 'count') RETURNS void
 *
 * Creates the triggers, or replaces them so that they carry the model's
 * current name and the given channel and payload: enabling again with
 * other arguments changes the choice.  Runs with the caller's privileges:
 * creating a trigger needs the TRIGGER privilege on the table, and
 * payload => 'keys' needs more (check_may_publish_keys).  Called through
 * the 0.1.0 declaration, which has only the model argument, it enables the
 * default channel and payload.
 */
Datum
harbor_enable_change_notify(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(model_arg(fcinfo));
	char	   *channel = NOTIFY_CHANNEL;
	NotifyPayload payload = NOTIFY_PAYLOAD_DEFAULT;
	HarborModel *model;
	char	   *relname;
	char	   *args;

	if (PG_NARGS() >= 2)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("channel must not be null")));
		channel = text_to_cstring(PG_GETARG_TEXT_PP(1));
		/* the limits of async.c, reported before any trigger fires */
		if (channel[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("channel must not be empty")));
		if (strlen(channel) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("channel name \"%s\" is too long", channel),
					 errdetail("A channel name has at most %d bytes.", NAMEDATALEN - 1)));
	}
	if (PG_NARGS() >= 3)
	{
		char	   *p;

		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("payload must not be null")));
		p = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (!parse_payload(p, &payload))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid payload \"%s\"", p),
					 errhint("Use 'none', 'count' or 'keys'.")));
	}

	model = harbor_model_lookup(name, false);
	if (payload == NOTIFY_PAYLOAD_KEYS)
		check_may_publish_keys(model);
	relname = harbor_quoted_relname(model->relid);
	args = psprintf("%s, %s, %s", quote_literal_cstr(model->name),
					quote_literal_cstr(channel),
					quote_literal_cstr(notify_payload_names[payload]));

	SPI_connect();
	for (int i = 0; i < (int) N_NOTIFY_TRIGGERS; i++)
	{
		const NotifyTrigger *t = &notify_triggers[i];
		char	   *sql;

		sql = psprintf("CREATE OR REPLACE TRIGGER %s AFTER %s ON %s %s"
					   " FOR EACH STATEMENT EXECUTE FUNCTION harbor._notify_changes(%s)",
					   quote_identifier(t->name), t->event, relname,
					   t->referencing, args);
		harbor_spi_exec(sql, 0, NULL, NULL, NULL, false, 0);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * harbor.disable_change_notify(model text) RETURNS void
 *
 * Drops the triggers that exist; disabling a model that was never enabled
 * does nothing.  Which exist is read from the catalog as of now, not
 * through a read-only SPI query: that would see the statement's snapshot
 * and miss triggers an enable_change_notify() earlier in the same
 * statement just made.
 */
Datum
harbor_disable_change_notify(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(model_arg(fcinfo));
	HarborModel *model = harbor_model_lookup(name, false);
	char	   *relname = harbor_quoted_relname(model->relid);

	SPI_connect();
	for (int i = 0; i < (int) N_NOTIFY_TRIGGERS; i++)
	{
		if (!OidIsValid(get_trigger_oid(model->relid, notify_triggers[i].name, true)))
			continue;
		harbor_spi_exec(psprintf("DROP TRIGGER %s ON %s",
								 quote_identifier(notify_triggers[i].name), relname),
						0, NULL, NULL, NULL, false, 0);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
