/*-------------------------------------------------------------------------
 *
 * loader_plan.c
 *	  What the relation loader compiles a model or a relationship to: the
 *	  column conversions, key types and kept statements, on the shared
 *	  per-table cache entries (cache.h, HARBOR_CACHE_LOADER).
 *
 * A model's ModelInfo hangs on its table's entry; a relationship's RelInfo
 * on its model's ModelInfo, and the entry depends on the target and
 * association tables.  Each table is locked before its entry is looked
 * at, so that a concurrent ALTER, RENAME or SET SCHEMA that committed
 * meanwhile has invalidated the entry before it is trusted.  Column types
 * come from the catalog when the info is built (the registry's snapshot
 * of them may lag behind), and every statement's result descriptor is
 * compared with them before a datum is read: a cache says which statement
 * to run, never which type a datum has.
 *
 * Key lookups get a generic plan straight away: an index scan on = ANY is
 * right whatever the keys, and replanning per call would cost more than
 * the query.  find() keeps the plan cache's choice, as its filters vary.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "loader.h"
#include "util.h"

/* find() statements kept per model; more shapes are planned per call. */
#define MAX_FIND_PLANS 256

typedef struct FindPlan
{
	uint64		hash;
	char	   *sql;
	SPIPlanPtr	plan;
} FindPlan;

/* harbor_cache_prepare, back in the caller's memory context. */
static SPIPlanPtr
prepare_kept(HarborCacheEntry *e, const char *sql, int nargs, Oid *argtypes,
			 int cursor_options)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan = harbor_cache_prepare(e, sql, nargs, argtypes, cursor_options);

	/* SPI leaves its procedure context current */
	MemoryContextSwitchTo(caller);
	return plan;
}

/* Column indexes by their names in jsonb key order: shorter first, then bytewise. */
static int
colkey_cmp(const void *a, const void *b, void *arg)
{
	JsonbValue *keys = arg;
	JsonbValue *ka = &keys[*(const int *) a];
	JsonbValue *kb = &keys[*(const int *) b];

	if (ka->val.string.len != kb->val.string.len)
		return ka->val.string.len > kb->val.string.len ? 1 : -1;
	return memcmp(ka->val.string.val, kb->val.string.val, ka->val.string.len);
}

static int
model_column_index(HarborModel *m, const char *col)
{
	for (int i = 0; i < m->ncolumns; i++)
		if (strcmp(m->columns[i], col) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of model \"%s\" is not mapped", col, m->name),
			 errhint("Run harbor.check_models() to see how the registry differs from the catalog.")));
	return -1;					/* keep compiler quiet */
}

/* A locked table that must still exist. */
static void
lock_table(Oid relid, const char *model)
{
	LockRelationOid(relid, AccessShareLock);
	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table of model \"%s\" does not exist", model),
				 errdetail("The table was dropped after the model was read."),
				 errhint("Retry the call; see also harbor.check_models().")));
}

/* The catalog type of each mapped column; errors if one is gone. */
static void
catalog_column_types(Oid relid, HarborModel *m, Oid *types)
{
	Relation	rel = relation_open(relid, NoLock);
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < m->ncolumns; i++)
	{
		types[i] = InvalidOid;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), m->columns[i]) == 0)
			{
				types[i] = att->atttypid;
				break;
			}
		}
		if (!OidIsValid(types[i]))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of model \"%s\" does not exist in table %s",
							m->columns[i], m->name, RelationGetRelationName(rel)),
					 errdetail("The table changed after the model was registered."),
					 errhint("Run harbor.check_models() to see the differences, and harbor.register_model() to refresh the model.")));
	}
	relation_close(rel, NoLock);
}

static ModelInfo *
build_model_info(HarborCacheEntry *e, Oid relid, const char *name)
{
	HarborModel *m = harbor_model_by_relid(relid);
	MemoryContext old;
	StringInfoData buf;
	ModelInfo  *mi;
	Oid		   *pktypes;

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is no longer registered as model \"%s\"",
						harbor_quoted_relname(relid), name),
				 errhint("Retry the call; see also harbor.models.")));

	old = MemoryContextSwitchTo(e->cxt);
	mi = palloc0(sizeof(ModelInfo));
	mi->relid = relid;
	mi->cxt = e->cxt;
	mi->entry = e;
	mi->ncols = m->ncolumns;
	mi->coltype = palloc(sizeof(Oid) * Max(m->ncolumns, 1));
	mi->conv = palloc(sizeof(ConvKind) * Max(m->ncolumns, 1));
	mi->basetype = palloc(sizeof(Oid) * Max(m->ncolumns, 1));
	mi->outfn = palloc0(sizeof(FmgrInfo) * Max(m->ncolumns, 1));
	mi->colkey = palloc0(sizeof(JsonbValue) * Max(m->ncolumns, 1));
	mi->coltyplen = palloc(sizeof(int16) * Max(m->ncolumns, 1));
	mi->colbyval = palloc(sizeof(bool) * Max(m->ncolumns, 1));
	mi->relname = harbor_quoted_relname(relid);
	catalog_column_types(relid, m, mi->coltype);
	initStringInfo(&buf);
	for (int i = 0; i < m->ncolumns; i++)
	{
		const char *q = quote_identifier(m->columns[i]);

		mi->conv[i] = loader_conv_kind(mi->coltype[i], &mi->basetype[i]);
		if (mi->conv[i] == CONV_OTHER || mi->conv[i] == CONV_FLOAT)
		{
			Oid			outfunc;
			bool		isvarlena;

			getTypeOutputInfo(mi->basetype[i], &outfunc, &isvarlena);
			fmgr_info_cxt(outfunc, &mi->outfn[i], e->cxt);
		}
		else if (mi->conv[i] == CONV_TO_JSONB)
		{
			/* to_jsonb(anyelement) reads its argument's type from the call */
			fmgr_info_cxt(F_TO_JSONB, &mi->outfn[i], e->cxt);
			fmgr_info_set_expr((Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
													 list_make1(makeNullConst(mi->coltype[i], -1, InvalidOid)),
													 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL),
							   &mi->outfn[i]);
		}
		get_typlenbyval(mi->coltype[i], &mi->coltyplen[i], &mi->colbyval[i]);
		mi->colkey[i].type = jbvString;
		mi->colkey[i].val.string.val = pstrdup(m->columns[i]);
		mi->colkey[i].val.string.len = strlen(m->columns[i]);
		appendStringInfo(&buf, "%st.%s", i > 0 ? ", " : "", q);
	}
	mi->select_list = buf.data;

	/* text output: columns in jsonb key order, each key as JSON text */
	mi->text_order = palloc(sizeof(int) * Max(m->ncolumns, 1));
	mi->keytext = palloc(sizeof(char *) * Max(m->ncolumns, 1));
	mi->keytextlen = palloc(sizeof(int) * Max(m->ncolumns, 1));
	for (int i = 0; i < m->ncolumns; i++)
	{
		initStringInfo(&buf);
		escape_json(&buf, m->columns[i]);
		appendStringInfoString(&buf, ": ");
		mi->keytext[i] = buf.data;
		mi->keytextlen[i] = buf.len;
		mi->text_order[i] = i;
	}
	qsort_arg(mi->text_order, m->ncolumns, sizeof(int), colkey_cmp, mi->colkey);

	mi->pk_idx = palloc(sizeof(int) * Max(m->npk, 1));
	pktypes = palloc(sizeof(Oid) * Max(m->npk, 1));
	initStringInfo(&buf);
	for (int k = 0; k < m->npk; k++)
	{
		mi->pk_idx[k] = model_column_index(m, m->pk_columns[k]);
		pktypes[k] = mi->coltype[mi->pk_idx[k]];
		appendStringInfo(&buf, "%st.%s", k > 0 ? ", " : "", quote_identifier(m->pk_columns[k]));
	}
	mi->pk_order = buf.data;
	loader_keyinfo_init(&mi->pk, m->npk, pktypes, e->cxt);
	mi->pk_sortable = true;
	mi->pk_intcmp = palloc0(sizeof(bool) * Max(m->npk, 1));
	mi->pk_cmp = palloc0(sizeof(FmgrInfo) * Max(m->npk, 1));
	for (int k = 0; k < m->npk; k++)
	{
		Oid			base = getBaseType(pktypes[k]);

		if (base == INT2OID || base == INT4OID || base == INT8OID || base == DATEOID ||
			base == TIMESTAMPOID || base == TIMESTAMPTZOID)
			mi->pk_intcmp[k] = true;
		else
		{
			TypeCacheEntry *tc = lookup_type_cache(pktypes[k], TYPECACHE_CMP_PROC_FINFO);

			if (OidIsValid(tc->cmp_proc))
				fmgr_info_copy(&mi->pk_cmp[k], &tc->cmp_proc_finfo, e->cxt);
			else
				mi->pk_sortable = false;
		}
	}
	mi->root_plan = NULL;
	mi->rels = NIL;
	mi->find_plans = NULL;
	mi->model = m;
	MemoryContextSwitchTo(old);
	return mi;
}

/*
 * Brings the registry snapshot up to date (a rebuild runs its statements
 * under a fixed search_path: registry.c).
 */
void
loader_registry_ensure(void)
{
	int			n;

	(void) harbor_model_list(&n);
}

/* A model by name, the registry brought up to date first. */
HarborModel *
loader_model_lookup(const char *name)
{
	loader_registry_ensure();
	return harbor_model_lookup(name, false);
}

/*
 * The ModelInfo of a registered table (name is for messages).  The table
 * is locked first: a change committed since the transaction started is
 * then known to the cache before its entry is looked at, and none can
 * come after.
 */
ModelInfo *
loader_model_info(Oid relid, const char *name)
{
	HarborCacheEntry *e;
	ModelInfo  *mi;

	lock_table(relid, name);
	loader_registry_ensure();
	e = harbor_cache_entry(relid);
	mi = e->data[HARBOR_CACHE_LOADER];
	if (mi == NULL)
	{
		mi = build_model_info(e, relid, name);
		/* linked in only once complete */
		e->data[HARBOR_CACHE_LOADER] = mi;
	}
	return mi;
}

/*
 * "WHERE t.c = ANY($1)" for one key column, a join to ROWS FROM
 * (unnest($1), unnest($2), ...) for several: both use an index on the key
 * columns.
 */
static void
append_key_match(StringInfo buf, const char *alias, char **cols, int n, int firstparam)
{
	if (n == 1)
	{
		appendStringInfo(buf, " WHERE %s.%s OPERATOR(pg_catalog.=) ANY ($%d)", alias, quote_identifier(cols[0]), firstparam);
		return;
	}
	appendStringInfoString(buf, " JOIN ROWS FROM (");
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, "%spg_catalog.unnest($%d)", i > 0 ? ", " : "", firstparam + i);
	appendStringInfoString(buf, ") AS k(");
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, "%sk%d", i > 0 ? ", " : "", i + 1);
	appendStringInfoString(buf, ") ON ");
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, "%s%s.%s OPERATOR(pg_catalog.=) k.k%d", i > 0 ? " AND " : "", alias,
						 quote_identifier(cols[i]), i + 1);
}

static Oid *
array_types_of(KeyInfo *ki)
{
	Oid		   *argtypes = palloc(sizeof(Oid) * Max(ki->n, 1));

	for (int i = 0; i < ki->n; i++)
	{
		argtypes[i] = get_array_type(ki->types[i]);
		if (!OidIsValid(argtypes[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("type %s cannot be used as a key for relation loading",
							format_type_be(ki->types[i])),
					 errdetail("Keys are passed as arrays and this type has no array type.")));
	}
	return argtypes;
}

/* The statement reading a model's rows by primary key ($1.. arrays of pk->types). */
SPIPlanPtr
loader_root_plan(ModelInfo *mi)
{
	if (mi->root_plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT %s FROM %s t", mi->select_list, mi->relname);
		append_key_match(&sql, "t", mi->model->pk_columns, mi->model->npk, 1);
		mi->root_plan = prepare_kept(mi->entry, sql.data, mi->pk.n, array_types_of(&mi->pk),
									 CURSOR_OPT_GENERIC_PLAN);
	}
	return mi->root_plan;
}

static RelInfo *
build_rel_info(ModelInfo *parent, HarborRelationship *r, ModelInfo *target)
{
	MemoryContext old = MemoryContextSwitchTo(parent->cxt);
	RelInfo    *ri = palloc0(sizeof(RelInfo));
	HarborModel *pm = parent->model;
	HarborModel *tm = target->model;
	Oid		   *ktypes;
	StringInfoData sql;

	ri->parent = parent;
	ri->target = target;
	ri->nkey = r->ncolumns;
	ri->parent_idx = palloc(sizeof(int) * Max(r->ncolumns, 1));
	ktypes = palloc(sizeof(Oid) * Max(r->ncolumns, 1));
	for (int i = 0; i < r->ncolumns; i++)
	{
		ri->parent_idx[i] = model_column_index(pm, r->local_columns[i]);
		ktypes[i] = parent->coltype[ri->parent_idx[i]];
	}
	loader_keyinfo_init(&ri->key, r->ncolumns, ktypes, parent->cxt);
	ri->to_many = (r->kind == HARBOR_ONE_TO_MANY || r->kind == HARBOR_MANY_TO_MANY);
	ri->label = psprintf("%s.%s", pm->name, r->name);

	ri->pk_shortcut = (r->kind == HARBOR_MANY_TO_ONE && r->nremote == tm->npk);
	for (int i = 0; ri->pk_shortcut && i < tm->npk; i++)
		if (strcmp(r->remote_columns[i], tm->pk_columns[i]) != 0 ||
			ktypes[i] != target->pk.types[i])
			ri->pk_shortcut = false;

	/* key columns, then the target's columns */
	ri->nresult = ri->nkey + target->ncols;
	ri->restype = palloc(sizeof(Oid) * Max(ri->nresult, 1));
	memcpy(ri->restype, ktypes, sizeof(Oid) * ri->nkey);
	memcpy(ri->restype + ri->nkey, target->coltype, sizeof(Oid) * target->ncols);

	/*
	 * The parent key comes back first, cast to the parent's column types so
	 * that it hashes like the parent's values.
	 */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	if (r->kind == HARBOR_MANY_TO_MANY)
	{
		for (int i = 0; i < r->ncolumns; i++)
			appendStringInfo(&sql, "s.%s::%s, ", quote_identifier(r->secondary_local_columns[i]),
							 format_type_be_qualified(ktypes[i]));
		appendStringInfo(&sql, "%s FROM %s s JOIN %s t ON ", target->select_list,
						 harbor_quoted_relname(r->secondary), target->relname);
		for (int j = 0; j < r->nremote; j++)
			appendStringInfo(&sql, "%st.%s OPERATOR(pg_catalog.=) s.%s", j > 0 ? " AND " : "",
							 quote_identifier(r->remote_columns[j]),
							 quote_identifier(r->secondary_remote_columns[j]));
		append_key_match(&sql, "s", r->secondary_local_columns, r->ncolumns, 1);
	}
	else
	{
		for (int i = 0; i < r->ncolumns; i++)
			appendStringInfo(&sql, "t.%s::%s, ", quote_identifier(r->remote_columns[i]),
							 format_type_be_qualified(ktypes[i]));
		appendStringInfo(&sql, "%s FROM %s t", target->select_list, target->relname);
		append_key_match(&sql, "t", r->remote_columns, r->ncolumns, 1);
	}
	/* children are sorted per parent in C, cheaper than a Sort node */
	if (ri->to_many && !target->pk_sortable)
		appendStringInfo(&sql, " ORDER BY %s", target->pk_order);
	ri->plan = prepare_kept(parent->entry, sql.data, ri->nkey, array_types_of(&ri->key),
							CURSOR_OPT_GENERIC_PLAN);
	harbor_cache_depend(parent->entry, target->relid);
	if (OidIsValid(r->secondary))
		harbor_cache_depend(parent->entry, r->secondary);
	ri->rel = r;
	MemoryContextSwitchTo(old);
	return ri;
}

/*
 * How to load relationship r of parent.  The target and association
 * tables are locked before a kept RelInfo is trusted; if that brought news
 * of a change, the parent's entry is stale and a fresh RelInfo is built
 * for this call (the next call rebuilds the entry).
 */
RelInfo *
loader_rel_info(ModelInfo *parent, HarborRelationship *r)
{
	ModelInfo  *target;
	RelInfo    *ri;
	bool		current;
	ListCell   *lc;

	if (r->target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relationship \"%s\" of model \"%s\" has no registered target",
						r->name, parent->model->name)));
	target = loader_model_info(r->target->relid, r->target->name);
	if (OidIsValid(r->secondary))
	{
		LockRelationOid(r->secondary, AccessShareLock);
		if (get_rel_name(r->secondary) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("association table of relationship \"%s\" of model \"%s\" does not exist",
							r->name, parent->model->name),
					 errdetail("The table was dropped after the relationship was read."),
					 errhint("Retry the call; see also harbor.check_models().")));
	}

	current = parent->entry->valid && parent->entry->data[HARBOR_CACHE_LOADER] == parent;
	if (current)
		foreach(lc, parent->rels)
		{
			ri = lfirst(lc);
			if (ri->rel == r && ri->target == target)
				return ri;
		}

	ri = build_rel_info(parent, r, target);
	if (current)
	{
		MemoryContext old = MemoryContextSwitchTo(parent->cxt);

		parent->rels = lappend(parent->rels, ri);
		MemoryContextSwitchTo(old);
	}
	return ri;
}

/*
 * A find() statement.  Kept per model by its text; past MAX_FIND_PLANS
 * shapes (or on a hash collision) a statement is planned for this call
 * only, as kept plans are never freed under a running call.
 */
SPIPlanPtr
loader_find_plan(ModelInfo *mi, const char *sql, int nargs, Oid *argtypes)
{
	uint64		h = hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0);
	bool		found;
	FindPlan   *fp;
	SPIPlanPtr	plan;
	MemoryContext caller = CurrentMemoryContext;

	if (mi->find_plans == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(FindPlan);
		ctl.hcxt = mi->cxt;
		mi->find_plans = hash_create("harbor_orm find plans", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	fp = hash_search(mi->find_plans, &h, HASH_FIND, NULL);
	if (fp != NULL && strcmp(fp->sql, sql) == 0)
		return fp->plan;
	if (fp != NULL || hash_get_num_entries(mi->find_plans) >= MAX_FIND_PLANS)
	{
		/* freed by SPI_finish at the end of the call */
		plan = SPI_prepare_cursor(sql, nargs, argtypes, 0);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		MemoryContextSwitchTo(caller);
		return plan;
	}
	plan = prepare_kept(mi->entry, sql, nargs, argtypes, 0);
	fp = hash_search(mi->find_plans, &h, HASH_ENTER, &found);
	fp->sql = MemoryContextStrdup(mi->cxt, sql);
	fp->plan = plan;
	return plan;
}

/*
 * The executed statement returned what the info it was built from
 * expects: the same number of columns, of the same types.  A kept plan is
 * re-planned when its tables change, and only this check stands between
 * a changed column type and a datum read as another type.  One comparison
 * per column per statement, not per row.
 */
void
loader_check_result(TupleDesc desc, int nexpected, Oid *expected,
					const char *function, const char *what)
{

	if (desc->natts != nexpected)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("tables of \"%s\" changed while harbor.%s was loading it", what, function),
				 errdetail("The statement returned %d columns where %d were expected.",
						   desc->natts, nexpected),
				 errhint("Retry the call; it will read the tables as they are now.")));
	for (int i = 0; i < nexpected; i++)
	{
		Oid			got = TupleDescAttr(desc, i)->atttypid;

		if (got != expected[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("tables of \"%s\" changed while harbor.%s was loading it", what, function),
					 errdetail("Column %d of the statement is of type %s where %s was expected.",
							   i + 1, format_type_be(got), format_type_be(expected[i])),
					 errhint("Retry the call; it will read the tables as they are now.")));
	}
}
