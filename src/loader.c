/*-------------------------------------------------------------------------
 *
 * loader.c
 *	  Batched relation loading: harbor.load(), harbor.get(), harbor.find(),
 *	  their JSON text forms (load_text, get_text, find_text) and
 *	  harbor.last_load_stats(); the SQL entry points and the life of one
 *	  call.
 *
 * A call loads the root rows with one query, then walks the include tree
 * breadth first: each relationship path costs one query per chunk of
 * distinct parent keys (WHERE key = ANY($1), or a join to unnest() of one
 * array per column for composite keys), as SQLAlchemy's selectinload does.
 * Rows are kept in an identity map per (model, primary key), so a row is
 * converted once however many parents or paths reach it; a many-to-one
 * whose target is already in the map, or a relationship already loaded
 * for the same parent key on another path, is not fetched again.
 *
 * Rows are converted column by column straight into JsonbValues
 * (loader_json.c), and the whole result is assembled as one JsonbValue
 * tree with keys pre-sorted per include node, then serialised once.  Every
 * statement runs through SPI as the calling user, so privileges and
 * row-level security apply.  What a model or relationship compiles to is
 * kept on the shared per-table cache (loader_plan.c); each statement's
 * result descriptor is checked against it before any row is read.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "harbor_orm.h"
#include "loader.h"
#include "registry.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_load);
PG_FUNCTION_INFO_V1(harbor_load_text);
PG_FUNCTION_INFO_V1(harbor_get);
PG_FUNCTION_INFO_V1(harbor_get_text);
PG_FUNCTION_INFO_V1(harbor_find);
PG_FUNCTION_INFO_V1(harbor_find_text);
PG_FUNCTION_INFO_V1(harbor_last_load_stats);

/* ---------------------------------------------------------------------
 * Per-call state
 * ---------------------------------------------------------------------
 */

typedef struct CallMap
{
	ModelInfo  *mi;				/* identity map of this model's rows */
	RelInfo    *ri;				/* or link map of this relationship */
	KeyMap	   *map;
} CallMap;

/* last_load_stats(): text of the last call's statistics. */
static char *last_stats = NULL;

/* ---------------------------------------------------------------------
 * Identity and link maps, fetching and converting rows
 * ---------------------------------------------------------------------
 */

/*
 * Whether rows read through two infos of one table can share an identity
 * map.  One call may hold two ModelInfos of a table when its cache entry
 * was rebuilt mid-way (a dependency changed); their rows are alike when
 * the columns are.
 */
static bool
same_model(ModelInfo *a, ModelInfo *b)
{
	if (a == b)
		return true;
	if (a->relid != b->relid || a->ncols != b->ncols || a->pk.n != b->pk.n ||
		memcmp(a->coltype, b->coltype, sizeof(Oid) * a->ncols) != 0 ||
		memcmp(a->pk_idx, b->pk_idx, sizeof(int) * a->pk.n) != 0)
		return false;
	for (int i = 0; i < a->ncols; i++)
		if (strcmp(a->colkey[i].val.string.val, b->colkey[i].val.string.val) != 0)
			return false;
	return true;
}

static bool
same_rel(RelInfo *a, RelInfo *b)
{
	return a == b ||
		(strcmp(a->label, b->label) == 0 && a->nkey == b->nkey &&
		 memcmp(a->parent_idx, b->parent_idx, sizeof(int) * a->nkey) == 0 &&
		 same_model(a->parent, b->parent) && same_model(a->target, b->target));
}

/* The call's identity map of a model's rows (mi) or link map of a relationship (ri). */
static KeyMap *
call_map(LoadCall *lc, ModelInfo *mi, RelInfo *ri)
{
	List	  **maps = mi ? &lc->idmaps : &lc->linkmaps;
	ListCell   *cell;
	CallMap    *cm;

	foreach(cell, *maps)
	{
		cm = lfirst(cell);
		if (mi ? same_model(cm->mi, mi) : same_rel(cm->ri, ri))
			return cm->map;
	}
	cm = palloc(sizeof(CallMap));
	cm->mi = mi;
	cm->ri = ri;
	cm->map = loader_keymap_create(mi ? &mi->pk : &ri->key, 64);
	*maps = lappend(*maps, cm);
	return cm->map;
}

/*
 * Takes a result row, deformed into vals/nulls, whose mapped columns start
 * at index off: returns the identity-mapped row, converting it only the
 * first time.  *hit tells whether it was there already.
 */
static LRow *
identity_row(LoadCall *lc, ModelInfo *mi, KeyMap *idmap, Datum *vals, bool *nulls,
			 int off, bool *hit)
{
	Datum	   *key;
	Datum		keybuf[INDEX_MAX_KEYS];
	uint32		h;
	LRow	   *row;
	char	   *mem;
	bool		textout;

	/* a key only needs its own memory when the row is new */
	key = mi->pk.n <= INDEX_MAX_KEYS ? keybuf : palloc(sizeof(Datum) * mi->pk.n);
	for (int k = 0; k < mi->pk.n; k++)
	{
		if (nulls[off + mi->pk_idx[k]])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("a row of model \"%s\" has a null primary key column \"%s\"",
							mi->model->name, mi->model->pk_columns[k]),
					 errdetail("The primary key of the table differs from the one the model was registered with."),
					 errhint("Run harbor.check_models() to see the differences, and harbor.register_model() to refresh the model.")));
		key[k] = loader_key_normalise(&mi->pk, k, vals[off + mi->pk_idx[k]]);
	}
	h = loader_key_hash(&mi->pk, key);
	row = loader_keymap_get(idmap, key, h);
	if (row != NULL)
	{
		*hit = true;
		return row;
	}
	*hit = false;

	/* one allocation for the row, its values, nulls, output and key */
	textout = LOAD_OUTPUT_IS_TEXT(lc->output);
	mem = palloc(MAXALIGN(sizeof(LRow)) + MAXALIGN(sizeof(Datum) * mi->ncols) +
				 (textout ? MAXALIGN(sizeof(int32) * (mi->ncols + 1)) :
				  MAXALIGN(sizeof(JsonbValue) * mi->ncols)) +
				 MAXALIGN(sizeof(Datum) * mi->pk.n) + mi->ncols + 1);
	row = (LRow *) mem;
	mem += MAXALIGN(sizeof(LRow));
	row->values = (Datum *) mem;
	mem += MAXALIGN(sizeof(Datum) * mi->ncols);
	if (textout)
	{
		row->json = NULL;
		row->textpos = (int32 *) mem;
		mem += MAXALIGN(sizeof(int32) * (mi->ncols + 1));
	}
	else
	{
		row->json = (JsonbValue *) mem;
		row->textpos = NULL;
		mem += MAXALIGN(sizeof(JsonbValue) * mi->ncols);
	}
	key = (Datum *) mem;
	mem += MAXALIGN(sizeof(Datum) * mi->pk.n);
	row->nulls = (bool *) mem;
	row->stamp = -1;
	memcpy(row->nulls, nulls + off, sizeof(bool) * mi->ncols);
	/* the values live in the executor's slot until the next row: copy them */
	for (int i = 0; i < mi->ncols; i++)
		row->values[i] = (mi->colbyval[i] || row->nulls[i]) ? vals[off + i] :
			datumCopy(vals[off + i], false, mi->coltyplen[i]);
	for (int k = 0; k < mi->pk.n; k++)
		key[k] = loader_key_normalise(&mi->pk, k, row->values[mi->pk_idx[k]]);
	if (textout)
		loader_render_row(mi, row->values, row->nulls, &lc->arena, &row->textoff, row->textpos);
	else
		for (int i = 0; i < mi->ncols; i++)
			loader_convert_value(mi, i, row->values[i], row->nulls[i], &row->json[i]);
	loader_keymap_put(idmap, key, h, row);
	return row;
}

/*
 * Rows of a statement go straight from the executor to the call: a
 * DestReceiver instead of SPI's tuple table, which would copy every row
 * into a tuple and deform it again.  Its startup checks the result
 * descriptor before any row is read.
 */
typedef struct LoadReceiver LoadReceiver;
typedef void (*LoadRowFn) (LoadReceiver *r, Datum *values, bool *nulls);

struct LoadReceiver
{
	DestReceiver pub;
	LoadCall   *lc;
	int			nexpected;
	Oid		   *expected;
	const char *what;
	LoadRowFn	row;
	IncNode    *node;
	KeyMap	   *idmap;
	KeyMap	   *links;
};

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	LoadReceiver *r = (LoadReceiver *) self;

	loader_check_result(typeinfo, r->nexpected, r->expected, r->lc->function, r->what);
}

static bool
receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	LoadReceiver *r = (LoadReceiver *) self;
	MemoryContext old = MemoryContextSwitchTo(r->lc->cxt);

	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(slot);
	r->row(r, slot->tts_values, slot->tts_isnull);
	MemoryContextSwitchTo(old);
	return true;
}

static void
receiver_nothing(DestReceiver *self)
{
}

static void
receiver_init(LoadReceiver *r, LoadCall *lc, IncNode *node, LoadRowFn row,
			  int nexpected, Oid *expected, const char *what)
{
	memset(r, 0, sizeof(LoadReceiver));
	r->pub.receiveSlot = receiver_receive;
	r->pub.rStartup = receiver_startup;
	r->pub.rShutdown = receiver_nothing;
	r->pub.rDestroy = receiver_nothing;
	r->pub.mydest = DestNone;
	r->lc = lc;
	r->node = node;
	r->row = row;
	r->nexpected = nexpected;
	r->expected = expected;
	r->what = what;
}

/*
 * Runs a kept plan with its parameters, each row to the receiver, and
 * counts what it returned.
 */
static void
run_plan(LoadReceiver *r, SPIPlanPtr plan, int nparams, Oid *types, Datum *values,
		 const char *nulls)
{
	LoadCall   *lc = r->lc;
	ParamListInfo params = makeParamList(nparams);
	SPIExecuteOptions options;
	int			rc;

	for (int i = 0; i < nparams; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = (nulls != NULL && nulls[i] == 'n');
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	/* one row more than allowed tells that the limit is exceeded */
	options.tcount = (int64) harbor_load_max_rows - lc->fetched + 1;
	options.dest = &r->pub;
	rc = SPI_execute_plan_extended(plan, &options);
	if (rc < 0)
		elog(ERROR, "harbor.%s: query failed: %s", lc->function, SPI_result_code_string(rc));
	/* SPI leaves its procedure context current; stay in the call's */
	MemoryContextSwitchTo(lc->cxt);
	lc->queries++;
	r->node->queries++;
	lc->fetched += SPI_processed;
	r->node->rows += SPI_processed;
	loader_check_row_limit(lc, lc->fetched);
}

/* Orders the children of one parent by the target's primary key. */
static int
row_pk_cmp(const void *a, const void *b, void *arg)
{
	ModelInfo  *mi = arg;
	const LRow *ra = *(LRow *const *) a;
	const LRow *rb = *(LRow *const *) b;

	for (int k = 0; k < mi->pk.n; k++)
	{
		Datum		da = ra->values[mi->pk_idx[k]];
		Datum		db = rb->values[mi->pk_idx[k]];
		int			c;

		if (mi->pk_intcmp[k])
			c = (int64) da < (int64) db ? -1 : ((int64) da > (int64) db ? 1 : 0);
		else
			c = DatumGetInt32(FunctionCall2Coll(&mi->pk_cmp[k], mi->pk.collation[k], da, db));
		if (c != 0)
			return c;
	}
	return 0;
}

static void
link_add(Link *l, LRow *row)
{
	if (l->nrows == l->cap)
	{
		l->cap = l->cap == 0 ? 4 : l->cap * 2;
		l->rows = l->rows ? repalloc(l->rows, sizeof(LRow *) * l->cap) : palloc(sizeof(LRow *) * l->cap);
	}
	l->rows[l->nrows++] = row;
}

static void
node_add_instance(IncNode *n, LRow *row)
{
	if (row->stamp == n->id)
		return;
	row->stamp = n->id;
	if (n->ninst == n->capinst)
	{
		n->capinst = n->capinst == 0 ? 16 : n->capinst * 2;
		n->inst = n->inst ? repalloc(n->inst, sizeof(LRow *) * n->capinst) :
			palloc(sizeof(LRow *) * n->capinst);
	}
	n->inst[n->ninst++] = row;
}

/* Runs a kept plan on the key arrays of keys (one array per key column). */
static void
run_keyed(LoadReceiver *r, SPIPlanPtr plan, KeyInfo *ki, Datum **keys, int nkeys)
{
	Datum	   *params = palloc(sizeof(Datum) * ki->n);
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeys, 1));

	for (int c = 0; c < ki->n; c++)
	{
		for (int i = 0; i < nkeys; i++)
			elems[i] = keys[i][c];
		params[c] = PointerGetDatum(construct_array(elems, nkeys, ki->types[c], ki->typlen[c],
													ki->byval[c], ki->typalign[c]));
	}
	run_plan(r, plan, ki->n, ki->arraytypes, params, NULL);
}

/* A row of a relationship: key columns, then the target's columns. */
static void
relationship_row(LoadReceiver *r, Datum *rv, bool *rn)
{
	LoadCall   *lc = r->lc;
	IncNode    *node = r->node;
	RelInfo    *ri = node->ri;
	Datum		key[INDEX_MAX_KEYS];
	bool		hit;
	Link	   *l;
	LRow	   *row;

	for (int k = 0; k < ri->nkey; k++)
		key[k] = loader_key_normalise(&ri->key, k, rv[k]);
	l = loader_keymap_get(r->links, key, loader_key_hash(&ri->key, key));
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("harbor.%s: a row of relationship \"%s\" matches none of the keys it was asked for",
						lc->function, ri->label),
				 errdetail("The database compares the key columns differently from their bytes, as a nondeterministic collation does."),
				 errhint("Declare the relationship on columns whose equality is exact.")));
	row = identity_row(lc, ri->target, r->idmap, rv, rn, ri->nkey, &hit);
	if (hit)
	{
		node->hits++;
		lc->hits++;
	}
	link_add(l, row);
}

/* Loads one include node: one query per chunk of parent keys not yet known. */
static void
load_node(LoadCall *lc, IncNode *node)
{
	RelInfo    *ri = node->ri;
	IncNode	   *parent = node->parent;
	KeyMap	   *links = node->links;
	KeyMap	   *idmap = call_map(lc, ri->target, NULL);
	Link	  **plinks = palloc(sizeof(Link *) * Max(parent->ninst, 1));
	Datum	  **pending = palloc(sizeof(Datum *) * Max(parent->ninst, 1));
	int			npending = 0;
	int			chunk = harbor_load_chunk_size;
	LoadReceiver r;

	receiver_init(&r, lc, node, relationship_row, ri->nresult, ri->restype, ri->label);
	r.idmap = idmap;
	r.links = links;
	for (int p = 0; p < parent->ninst; p++)
	{
		LRow	   *prow = parent->inst[p];
		Datum	   *key = palloc(sizeof(Datum) * ri->nkey);
		bool		hasnull = false;
		uint32		h;
		Link	   *l;

		CHECK_FOR_INTERRUPTS();
		for (int k = 0; k < ri->nkey; k++)
		{
			if (prow->nulls[ri->parent_idx[k]])
				hasnull = true;
			else
				key[k] = loader_key_normalise(&ri->key, k, prow->values[ri->parent_idx[k]]);
		}
		plinks[p] = NULL;
		if (hasnull)
			continue;
		h = loader_key_hash(&ri->key, key);
		l = loader_keymap_get(links, key, h);
		if (l != NULL)
		{
			if (l->loaded)
			{
				/* loaded on another path or for another parent */
				node->hits++;
				lc->hits++;
			}
			plinks[p] = l;
			continue;
		}
		l = palloc0(sizeof(Link));
		loader_keymap_put(links, key, h, l);
		plinks[p] = l;
		if (ri->pk_shortcut)
		{
			LRow	   *target = loader_keymap_get(idmap, key, h);

			if (target != NULL)
			{
				link_add(l, target);
				l->loaded = true;
				node->hits++;
				lc->hits++;
				continue;
			}
		}
		pending[npending++] = key;
	}

	for (int start = 0; start < npending; start += chunk)
	{
		int			n = Min(chunk, npending - start);

		run_keyed(&r, ri->plan, &ri->key, pending + start, n);
		for (int i = start; i < start + n; i++)
		{
			Link	   *l = loader_keymap_get(links, pending[i], loader_key_hash(&ri->key, pending[i]));

			l->loaded = true;
			if (ri->to_many && ri->target->pk_sortable && l->nrows > 1)
				qsort_arg(l->rows, l->nrows, sizeof(LRow *), row_pk_cmp, ri->target);
		}
	}

	for (int p = 0; p < parent->ninst; p++)
		if (plinks[p] != NULL)
			for (int i = 0; i < plinks[p]->nrows; i++)
				node_add_instance(node, plinks[p]->rows[i]);
}

/* ---------------------------------------------------------------------
 * The include tree
 * ---------------------------------------------------------------------
 */

static IncNode *
new_node(LoadCall *lc, IncNode *parent, const char *name, HarborRelationship *r, ModelInfo *mi)
{
	IncNode	   *n = palloc0(sizeof(IncNode));

	n->id = lc->nnodes++;
	n->parent = parent;
	n->mi = mi;
	if (parent == NULL)
	{
		n->path = "";
		n->depth = 0;
	}
	else
	{
		n->name = pstrdup(name);
		n->path = parent->depth == 0 ? n->name : psprintf("%s.%s", parent->path, name);
		n->depth = parent->depth + 1;
		n->ri = loader_rel_info(parent->mi, r);
		n->links = call_map(lc, NULL, n->ri);
		parent->children = lappend(parent->children, n);
	}
	return n;
}

static void
build_include_tree(LoadCall *lc, ModelInfo *rootmi, ArrayType *include)
{
	char	  **paths = NULL;
	int			npaths = 0;

	lc->root = new_node(lc, NULL, NULL, NULL, rootmi);
	if (include != NULL)
		paths = harbor_text_array_to_cstrings(PointerGetDatum(include), &npaths);

	for (int i = 0; i < npaths; i++)
	{
		char	   *copy = pstrdup(paths[i]);
		char	   *seg = copy;
		IncNode	   *cur = lc->root;
		int			depth = 0;

		for (;;)
		{
			char	   *dot = strchr(seg, '.');
			ListCell   *cell;
			IncNode	   *next = NULL;
			HarborRelationship *r;

			if (dot)
				*dot = '\0';
			if (*seg == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("include path \"%s\" has an empty segment", paths[i]),
						 errhint("Write paths as relationship names separated by dots, like 'variants.product'.")));
			depth++;
			if (depth > harbor_max_include_depth)
				ereport(ERROR,
						(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
						 errmsg("include path \"%s\" is deeper than harbor_orm.max_include_depth (%d)",
								paths[i], harbor_max_include_depth),
						 errhint("Shorten the path or raise harbor_orm.max_include_depth.")));
			foreach(cell, cur->children)
			{
				IncNode	   *c = lfirst(cell);

				if (strcmp(c->name, seg) == 0)
					next = c;
			}
			if (next == NULL)
			{
				r = harbor_relationship_lookup(cur->mi->model, seg);
				for (int j = 0; j < cur->mi->ncols; j++)
					if (strcmp(cur->mi->model->columns[j], seg) == 0)
						ereport(ERROR,
								(errcode(ERRCODE_DUPLICATE_COLUMN),
								 errmsg("relationship \"%s\" of model \"%s\" has the name of one of its columns",
										seg, cur->mi->model->name),
								 errdetail("The loaded object would hold both under the same key."),
								 errhint("Declare the relationship under another name with harbor.register_relationship().")));
				next = new_node(lc, cur, seg, r, NULL);
				next->mi = next->ri->target;
			}
			cur = next;
			if (!dot)
				break;
			seg = dot + 1;
		}
	}
}
/* Loads every node below the root, parents first. */
static void
load_tree(LoadCall *lc)
{
	List	   *queue = list_make1(lc->root);

	lc->nodes = NIL;
	while (queue != NIL)
	{
		IncNode	   *n = linitial(queue);
		ListCell   *cell;

		queue = list_delete_first(queue);
		lc->nodes = lappend(lc->nodes, n);
		if (n->parent != NULL)
			load_node(lc, n);
		foreach(cell, n->children)
			queue = lappend(queue, lfirst(cell));
	}
}

/* ---------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------
 */

static char *
model_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

static ArrayType *
include_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return PG_GETARG_ARRAYTYPE_P(argno);
}

/*
 * Memory for a call.  One context is kept for the backend, with a large
 * first block, so that a call does not go back to malloc (and the kernel)
 * for every page it builds; a call made while another is running (from a
 * policy or trigger function, say) gets a context of its own.
 */
static MemoryContext KeptCallContext = NULL;
static bool kept_call_context_busy = false;
static bool xact_callback_registered = false;

static void
loader_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		kept_call_context_busy = false;
		if (KeptCallContext != NULL)
			MemoryContextReset(KeptCallContext);
	}
}

static MemoryContext
call_context(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(loader_xact_callback, NULL);
		xact_callback_registered = true;
	}
	if (kept_call_context_busy)
		return AllocSetContextCreate(CurrentMemoryContext, "harbor_orm nested load call",
									 ALLOCSET_DEFAULT_SIZES);
	if (KeptCallContext == NULL)
		KeptCallContext = AllocSetContextCreate(TopMemoryContext, "harbor_orm load call",
												256 * 1024, 256 * 1024, 8 * 1024 * 1024);
	MemoryContextReset(KeptCallContext);
	kept_call_context_busy = true;
	return KeptCallContext;
}

static void
release_call_context(MemoryContext cxt)
{
	if (cxt == KeptCallContext)
	{
		MemoryContextReset(cxt);
		kept_call_context_busy = false;
	}
	else
		MemoryContextDelete(cxt);
}

/* Starts a call: SPI, a memory context for the call, the include tree. */
static LoadCall *
begin_call(const char *function, LoadOutput output, const char *model, ArrayType *include,
		   MemoryContext *callercxt)
{
	LoadCall   *lc;
	HarborModel *m;
	MemoryContext cxt;

	if (last_stats)
	{
		pfree(last_stats);
		last_stats = NULL;
	}
	*callercxt = CurrentMemoryContext;
	m = loader_model_lookup(model);
	cxt = call_context();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(cxt);
	lc = palloc0(sizeof(LoadCall));
	lc->function = function;
	lc->output = output;
	lc->cxt = cxt;
	if (LOAD_OUTPUT_IS_TEXT(output))
		initStringInfo(&lc->arena);
	build_include_tree(lc, loader_model_info(m->relid, m->name), include);
	loader_prepare_slots(lc->root);
	return lc;
}

/* A root row of load() and get(): into the identity map. */
static void
keyed_root_row(LoadReceiver *r, Datum *values, bool *nulls)
{
	bool		hit;

	identity_row(r->lc, r->node->mi, r->idmap, values, nulls, 0, &hit);
}

/* A root row of find(): listed in the order it comes. */
static void
found_root_row(LoadReceiver *r, Datum *values, bool *nulls)
{
	bool		hit;

	node_add_instance(r->node, identity_row(r->lc, r->node->mi, r->idmap, values, nulls, 0, &hit));
}

/*
 * Builds the output from the root objects, ends SPI, returns the jsonb or
 * text datum (0 for get() of no row).
 */
static Datum
finish_call(LoadCall *lc, MemoryContext callercxt)
{
	IncNode    *root = lc->root;
	Datum		result = (Datum) 0;
	char	   *stats;

	if (lc->output == OUT_TEXT_ARRAY)
	{
		StringInfoData out;

		/* written in the caller's memory as a text datum, header first */
		MemoryContextSwitchTo(callercxt);
		initStringInfo(&out);
		enlargeStringInfo(&out, Min(VARHDRSZ + 2 + (int64) lc->arena.len + 16 * (int64) root->ninst,
									64 * 1024 * 1024));
		out.len = VARHDRSZ;
		appendStringInfoCharMacro(&out, '[');
		for (int i = 0; i < root->ninst; i++)
		{
			if (i > 0)
				appendBinaryStringInfo(&out, ", ", 2);
			loader_write_object(lc, root->inst[i], root, &out);
		}
		appendStringInfoCharMacro(&out, ']');
		SET_VARSIZE(out.data, out.len);
		result = PointerGetDatum(out.data);
		MemoryContextSwitchTo(lc->cxt);
	}
	else if (lc->output == OUT_TEXT_SINGLE)
	{
		if (root->ninst > 0)
		{
			StringInfoData out;

			MemoryContextSwitchTo(callercxt);
			initStringInfo(&out);
			out.len = VARHDRSZ;
			loader_write_object(lc, root->inst[0], root, &out);
			SET_VARSIZE(out.data, out.len);
			result = PointerGetDatum(out.data);
			MemoryContextSwitchTo(lc->cxt);
		}
	}
	else
	{
		JsonbValue	array;

		array.type = jbvArray;
		array.val.array.rawScalar = false;
		array.val.array.nElems = root->ninst;
		array.val.array.elems = palloc(sizeof(JsonbValue) * Max(root->ninst, 1));
		for (int i = 0; i < root->ninst; i++)
			loader_build_object(lc, root->inst[i], root, &array.val.array.elems[i]);
		MemoryContextSwitchTo(callercxt);
		if (lc->output == OUT_JSONB_ARRAY)
			result = JsonbPGetDatum(JsonbValueToJsonb(&array));
		else if (root->ninst > 0)
			result = JsonbPGetDatum(JsonbValueToJsonb(&array.val.array.elems[0]));
		MemoryContextSwitchTo(lc->cxt);
	}

	stats = loader_stats_text(lc);
	MemoryContextSwitchTo(TopMemoryContext);
	last_stats = pstrdup(stats);
	MemoryContextSwitchTo(callercxt);
	SPI_finish();
	release_call_context(lc->cxt);
	return result;
}

/*
 * Turns the ids argument into key tuples of the model's primary key types.
 * Scalars for a one-column key, records for a composite one.  Other types
 * are converted when an assignment cast exists, through their text form.
 */
static int
ids_to_keys(ModelInfo *mi, Datum *elems, bool *nulls, int nelems, Oid elemtype, Datum ***keysp)
{
	KeyInfo    *pk = &mi->pk;
	Datum	  **keys = palloc(sizeof(Datum *) * Max(nelems, 1));
	int			nkeys = 0;
	KeyMap	   *seen = loader_keymap_create(pk, nelems);
	FmgrInfo   *infn = palloc0(sizeof(FmgrInfo) * pk->n);
	Oid		   *ioparam = palloc(sizeof(Oid) * pk->n);
	FmgrInfo   *outfn = palloc0(sizeof(FmgrInfo) * pk->n);
	Oid		   *srctype = palloc(sizeof(Oid) * pk->n);
	bool		composite = (pk->n > 1);
	TupleDesc	rdesc = NULL;

	if (composite)
	{
		if (!type_is_rowtype(elemtype))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("ids must be records for model \"%s\"", mi->model->name),
					 errdetail("Its primary key has %d columns: %s.", pk->n,
							   harbor_join_quoted(mi->model->pk_columns, pk->n)),
					 errhint("Pass an array of rows, like ARRAY[ROW(1, 'a')].")));
		if (elemtype != RECORDOID)
			rdesc = lookup_rowtype_tupdesc_copy(elemtype, -1);
	}

	for (int k = 0; k < pk->n; k++)
		srctype[k] = InvalidOid;

	for (int i = 0; i < nelems; i++)
	{
		Datum	   *key;
		bool		skip = false;
		uint32		h;

		CHECK_FOR_INTERRUPTS();
		if (nulls[i])
			continue;
		key = palloc(sizeof(Datum) * pk->n);
		if (composite)
		{
			HeapTupleHeader th = DatumGetHeapTupleHeader(elems[i]);
			TupleDesc	desc = rdesc;
			HeapTupleData tmp;
			int			natts;

			if (desc == NULL)
				desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
			natts = desc->natts;
			if (natts != pk->n)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("ids of model \"%s\" need %d fields, not %d", mi->model->name, pk->n, natts),
						 errdetail("The primary key is %s.", harbor_join_quoted(mi->model->pk_columns, pk->n))));
			tmp.t_len = HeapTupleHeaderGetDatumLength(th);
			tmp.t_data = th;
			for (int k = 0; k < pk->n; k++)
			{
				bool		isnull;
				Oid			t = TupleDescAttr(desc, k)->atttypid;

				key[k] = heap_getattr(&tmp, k + 1, desc, &isnull);
				if (isnull)
					skip = true;
				if (srctype[k] != t)
				{
					srctype[k] = t;
					if (t != pk->types[k])
					{
						Oid			f;
						bool		v;

						if (!can_coerce_type(1, &t, &pk->types[k], COERCION_ASSIGNMENT))
							ereport(ERROR,
									(errcode(ERRCODE_DATATYPE_MISMATCH),
									 errmsg("field %d of ids is of type %s, but primary key column \"%s\" of model \"%s\" is of type %s",
											k + 1, format_type_be(t), mi->model->pk_columns[k],
											mi->model->name, format_type_be(pk->types[k]))));
						getTypeOutputInfo(t, &f, &v);
						fmgr_info(f, &outfn[k]);
						getTypeInputInfo(pk->types[k], &f, &ioparam[k]);
						fmgr_info(f, &infn[k]);
					}
				}
			}
		}
		else
		{
			key[0] = elems[i];
			if (srctype[0] != elemtype)
			{
				srctype[0] = elemtype;
				if (elemtype != pk->types[0])
				{
					Oid			f;
					bool		v;

					if (!can_coerce_type(1, &elemtype, &pk->types[0], COERCION_ASSIGNMENT) ||
						type_is_rowtype(elemtype))
						ereport(ERROR,
								(errcode(ERRCODE_DATATYPE_MISMATCH),
								 errmsg("ids are of type %s, but the primary key of model \"%s\" is of type %s",
										format_type_be(elemtype), mi->model->name,
										format_type_be(pk->types[0])),
								 errhint("Pass an array of %s.", format_type_be(pk->types[0]))));
					getTypeOutputInfo(elemtype, &f, &v);
					fmgr_info(f, &outfn[0]);
					getTypeInputInfo(pk->types[0], &f, &ioparam[0]);
					fmgr_info(f, &infn[0]);
				}
			}
		}
		if (skip)
			continue;
		for (int k = 0; k < pk->n; k++)
		{
			if (srctype[k] != pk->types[k])
				key[k] = InputFunctionCall(&infn[k], OutputFunctionCall(&outfn[k], key[k]),
										   ioparam[k], -1);
			key[k] = loader_key_normalise(pk, k, key[k]);
		}
		h = loader_key_hash(pk, key);
		if (loader_keymap_get(seen, key, h) != NULL)
			continue;
		loader_keymap_put(seen, key, h, key);
		keys[nkeys++] = key;
	}
	*keysp = keys;
	return nkeys;
}

/* load() and get(): roots by primary key, in the order given. */
static Datum
load_by_ids(FunctionCallInfo fcinfo, const char *function, LoadOutput output, Datum *elems,
			bool *nulls, int nelems, Oid elemtype, ArrayType *include)
{
	MemoryContext callercxt;
	LoadCall   *lc = begin_call(function, output, model_arg(fcinfo), include, &callercxt);
	ModelInfo  *mi = lc->root->mi;
	Datum	  **keys;
	int			nkeys = ids_to_keys(mi, elems, nulls, nelems, elemtype, &keys);
	KeyMap	   *idmap = call_map(lc, mi, NULL);
	SPIPlanPtr	plan = loader_root_plan(mi);
	int			chunk = harbor_load_chunk_size;
	LoadReceiver r;

	receiver_init(&r, lc, lc->root, keyed_root_row, mi->ncols, mi->coltype, mi->model->name);
	r.idmap = idmap;
	for (int start = 0; start < nkeys; start += chunk)
		run_keyed(&r, plan, &mi->pk, keys + start, Min(chunk, nkeys - start));
	/* in the order of ids; unknown ones are left out */
	for (int i = 0; i < nkeys; i++)
	{
		LRow	   *row = loader_keymap_get(idmap, keys[i], loader_key_hash(&mi->pk, keys[i]));

		if (row != NULL)
			node_add_instance(lc->root, row);
	}
	load_tree(lc);
	return finish_call(lc, callercxt);
}

/* load() and load_text(): the ids array, then load_by_ids */
static Datum
load_array(FunctionCallInfo fcinfo, const char *function, LoadOutput output)
{
	ArrayType  *ids;
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	if (PG_ARGISNULL(1))
	{
		elems = NULL;
		nulls = NULL;
		nelems = 0;
		elemtype = InvalidOid;
	}
	else
	{
		ids = PG_GETARG_ARRAYTYPE_P(1);
		if (ARR_NDIM(ids) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("ids must be a one-dimensional array")));
		elemtype = ARR_ELEMTYPE(ids);
		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(ids, elemtype, typlen, typbyval, typalign, &elems, &nulls, &nelems);
	}
	return load_by_ids(fcinfo, function, output, elems, nulls, nelems, elemtype,
					   include_arg(fcinfo, 2));
}

Datum
harbor_load(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(load_array(fcinfo, "load", OUT_JSONB_ARRAY));
}

/* load() as JSON text, written directly: the text load()::text gives. */
Datum
harbor_load_text(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(load_array(fcinfo, "load_text", OUT_TEXT_ARRAY));
}

/* get() and get_text(): one object or NULL */
static Datum
get_one(FunctionCallInfo fcinfo, const char *function, LoadOutput output)
{
	Datum		elem;
	bool		isnull = PG_ARGISNULL(1);
	Datum		result;

	if (isnull)
	{
		/* nothing to load, but the model must still exist */
		loader_model_lookup(model_arg(fcinfo));
		fcinfo->isnull = true;
		return (Datum) 0;
	}
	elem = PG_GETARG_DATUM(1);
	result = load_by_ids(fcinfo, function, output, &elem, &isnull, 1,
						 get_fn_expr_argtype(fcinfo->flinfo, 1), include_arg(fcinfo, 2));
	if (result == (Datum) 0)
		fcinfo->isnull = true;
	return result;
}

Datum
harbor_get(PG_FUNCTION_ARGS)
{
	return get_one(fcinfo, "get", OUT_JSONB_SINGLE);
}

Datum
harbor_get_text(PG_FUNCTION_ARGS)
{
	return get_one(fcinfo, "get_text", OUT_TEXT_SINGLE);
}

/* find() and find_text() */
static Datum
find_rows(FunctionCallInfo fcinfo, const char *function, LoadOutput output)
{
	MemoryContext callercxt;
	LoadCall   *lc = begin_call(function, output, model_arg(fcinfo), include_arg(fcinfo, 2),
								&callercxt);
	ModelInfo  *mi = lc->root->mi;
	FindQuery  *q = palloc0(sizeof(FindQuery));
	int			plim;
	int			poff;
	LoadReceiver r;

	initStringInfo(&q->sql);
	appendStringInfo(&q->sql, "SELECT %s FROM %s t", mi->select_list, mi->relname);
	if (!PG_ARGISNULL(1))
		loader_find_add_filter(q, mi, PG_GETARG_JSONB_P(1));
	loader_find_add_order_by(q, mi, PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3));
	plim = loader_find_add_param(q, INT8OID, Int64GetDatum(PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4)), PG_ARGISNULL(4));
	poff = loader_find_add_param(q, INT8OID, Int64GetDatum(PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5)), false);
	appendStringInfo(&q->sql, " LIMIT $%d OFFSET $%d", plim, poff);

	receiver_init(&r, lc, lc->root, found_root_row, mi->ncols, mi->coltype, mi->model->name);
	r.idmap = call_map(lc, mi, NULL);
	run_plan(&r, loader_find_plan(mi, q->sql.data, q->nparams, q->types), q->nparams, q->types,
			 q->values, q->nulls);
	load_tree(lc);
	return finish_call(lc, callercxt);
}

Datum
harbor_find(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(find_rows(fcinfo, "find", OUT_JSONB_ARRAY));
}

Datum
harbor_find_text(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(find_rows(fcinfo, "find_text", OUT_TEXT_ARRAY));
}

Datum
harbor_last_load_stats(PG_FUNCTION_ARGS)
{
	if (last_stats == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(last_stats)));
}

