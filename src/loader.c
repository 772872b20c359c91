/*-------------------------------------------------------------------------
 *
 * loader.c
 *	  Batched relation loading: harbor.load(), harbor.get(), harbor.find()
 *	  and harbor.last_load_stats().
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
 * Rows are converted column by column straight into JsonbValues (the same
 * rendering as to_jsonb; types whose rendering needs more than a scalar go
 * through to_jsonb in the query), and the whole result is assembled as one
 * JsonbValue tree with keys pre-sorted per include node, then serialised
 * once.  Every statement runs through SPI as the calling user, so
 * privileges and row-level security apply; plans are kept per backend and
 * dropped when the registry generation changes.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "harbor_orm.h"
#include "registry.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_load);
PG_FUNCTION_INFO_V1(harbor_get);
PG_FUNCTION_INFO_V1(harbor_find);
PG_FUNCTION_INFO_V1(harbor_last_load_stats);

/* How a column value becomes a JsonbValue (to_jsonb's categories). */
typedef enum ConvKind
{
	CONV_BOOL,
	CONV_INT2,
	CONV_INT4,
	CONV_INT8,
	CONV_NUMERIC,
	CONV_FLOAT,					/* float4/float8: via output text */
	CONV_TEXT,					/* text, varchar, bpchar: bytes as they are */
	CONV_DATETIME,				/* date, timestamp, timestamptz */
	CONV_OTHER,					/* output function, as a string */
	CONV_JSONB					/* to_jsonb() in the query, unpacked here */
} ConvKind;

/* Key columns: hashing and equality, binary where that is exact. */
typedef struct KeyInfo
{
	int			n;
	Oid		   *types;
	bool	   *binary;			/* equal iff the bytes are equal */
	int16	   *typlen;
	bool	   *byval;
	char	   *typalign;
	FmgrInfo   *hashfn;			/* for the non-binary ones */
	FmgrInfo   *eqfn;
	Oid		   *collation;
} KeyInfo;

/* Per backend and registry generation: how to read one model. */
typedef struct ModelInfo
{
	HarborModel *model;			/* hash key */
	int			ncols;
	ConvKind   *conv;
	Oid		   *basetype;
	FmgrInfo   *outfn;
	JsonbValue *colkey;			/* column names as jsonb strings */
	char	   *relname;		/* quoted */
	char	   *select_list;	/* t."a", t."b", ... */
	int		   *pk_idx;			/* pk columns among the mapped ones */
	KeyInfo		pk;
	SPIPlanPtr	root_plan;		/* by primary keys */
	char	   *pk_order;		/* t."id", ... */
	bool		pk_sortable;	/* every pk column has a btree order */
	bool	   *pk_intcmp;		/* compare as int64 Datums */
	FmgrInfo   *pk_cmp;			/* else the btree comparison */
} ModelInfo;

/* Per backend and registry generation: how to load one relationship. */
typedef struct RelInfo
{
	HarborRelationship *rel;	/* hash key */
	ModelInfo  *parent;
	ModelInfo  *target;
	int			nkey;
	int		   *parent_idx;		/* local columns among the parent's mapped ones */
	KeyInfo		key;			/* typed as the parent's local columns */
	bool		to_many;
	bool		pk_shortcut;	/* remote columns are the target's primary key */
	SPIPlanPtr	plan;
	char	   *label;			/* model.name, for messages and stats */
} RelInfo;

/* Plans for find(), keyed by a hash of their text. */
typedef struct PlanEntry
{
	uint64		hash;
	char	   *sql;
	SPIPlanPtr	plan;
} PlanEntry;

static MemoryContext LoaderCacheContext = NULL;
static uint64 loader_generation = 0;
static HTAB *model_infos = NULL;
static HTAB *rel_infos = NULL;
static HTAB *find_plans = NULL;
static List *kept_plans = NIL;

#define MAX_FIND_PLANS 256

/* ---------------------------------------------------------------------
 * Per-call state
 * ---------------------------------------------------------------------
 */

/* A row in the identity map. */
typedef struct LRow
{
	Datum	   *values;			/* mapped columns */
	bool	   *nulls;
	JsonbValue *json;			/* mapped columns, converted */
	int			stamp;			/* last node this row was listed at */
} LRow;

/* The children of one parent key under one relationship. */
typedef struct Link
{
	int			nrows;
	int			cap;
	LRow	  **rows;
	bool		loaded;
} Link;

/* Open-addressing hash map from key tuples to pointers. */
typedef struct KeyMapEntry
{
	uint32		hash;
	Datum	   *key;			/* NULL: empty slot */
	void	   *value;
} KeyMapEntry;

typedef struct KeyMap
{
	KeyInfo    *ki;
	uint32		size;			/* power of two */
	uint32		used;
	KeyMapEntry *slots;
} KeyMap;

typedef struct IncNode IncNode;

typedef struct OutSlot
{
	JsonbValue	key;
	int			col;			/* >= 0: mapped column */
	IncNode	   *child;			/* else: relationship */
} OutSlot;

struct IncNode
{
	int			id;
	char	   *name;			/* relationship name; NULL at the root */
	char	   *path;			/* dotted path; "" at the root */
	int			depth;
	IncNode	   *parent;
	List	   *children;
	RelInfo    *ri;				/* NULL at the root */
	ModelInfo  *mi;
	KeyMap	   *links;			/* the relationship's link map */
	int			nslots;
	OutSlot    *slots;			/* in jsonb key order */
	int			ninst;
	int			capinst;
	LRow	  **inst;			/* distinct rows at this node */
	/* statistics */
	int64		queries;
	int64		rows;
	int64		hits;
};

typedef struct CallMap
{
	void	   *owner;			/* ModelInfo or RelInfo */
	KeyMap	   *map;
} CallMap;

typedef struct LoadCall
{
	const char *function;
	MemoryContext cxt;
	IncNode	   *root;
	List	   *nodes;			/* breadth first */
	List	   *idmaps;			/* CallMap per ModelInfo */
	List	   *linkmaps;		/* CallMap per RelInfo */
	int64		fetched;
	int64		built;
	int64		queries;
	int64		hits;
	int			nnodes;
} LoadCall;

/* last_load_stats(): text of the last call's statistics. */
static char *last_stats = NULL;

/* ---------------------------------------------------------------------
 * Key hashing
 * ---------------------------------------------------------------------
 */

static void
keyinfo_init(KeyInfo *ki, int n, Oid *types)
{
	ki->n = n;
	ki->types = palloc(sizeof(Oid) * n);
	ki->binary = palloc(sizeof(bool) * n);
	ki->typlen = palloc(sizeof(int16) * n);
	ki->byval = palloc(sizeof(bool) * n);
	ki->typalign = palloc(sizeof(char) * n);
	ki->hashfn = palloc0(sizeof(FmgrInfo) * n);
	ki->eqfn = palloc0(sizeof(FmgrInfo) * n);
	ki->collation = palloc(sizeof(Oid) * n);
	for (int i = 0; i < n; i++)
	{
		Oid			base = getBaseType(types[i]);

		ki->types[i] = types[i];
		get_typlenbyvalalign(types[i], &ki->typlen[i], &ki->byval[i], &ki->typalign[i]);
		ki->collation[i] = OidIsValid(get_typcollation(base)) ? DEFAULT_COLLATION_OID : InvalidOid;
		switch (base)
		{
			case INT2OID:
			case INT4OID:
			case INT8OID:
			case OIDOID:
			case BOOLOID:
			case CHAROID:
			case DATEOID:
			case TIMESTAMPOID:
			case TIMESTAMPTZOID:
			case UUIDOID:
			case TEXTOID:
			case VARCHAROID:
				ki->binary[i] = true;
				break;
			default:
				{
					TypeCacheEntry *tc = lookup_type_cache(types[i],
														   TYPECACHE_HASH_PROC_FINFO |
														   TYPECACHE_EQ_OPR_FINFO);

					if (!OidIsValid(tc->hash_proc) || !OidIsValid(tc->eq_opr))
						ereport(ERROR,
								(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
								 errmsg("type %s cannot be used as a key for relation loading",
										format_type_be(types[i])),
								 errdetail("Key columns need a hash function and an equality operator.")));
					ki->binary[i] = false;
					fmgr_info_copy(&ki->hashfn[i], &tc->hash_proc_finfo, CurrentMemoryContext);
					fmgr_info_copy(&ki->eqfn[i], &tc->eq_opr_finfo, CurrentMemoryContext);
				}
		}
	}
}

/* Detoast varlena key values so that binary comparison is exact. */
static inline Datum
key_normalise(KeyInfo *ki, int i, Datum d)
{
	if (ki->typlen[i] == -1)
		return PointerGetDatum(PG_DETOAST_DATUM_PACKED(d));
	return d;
}

static uint32
key_hash(KeyInfo *ki, Datum *key)
{
	uint32		h = 0;

	for (int i = 0; i < ki->n; i++)
	{
		uint32		k;

		if (!ki->binary[i])
			k = DatumGetUInt32(FunctionCall1Coll(&ki->hashfn[i], ki->collation[i], key[i]));
		else if (ki->byval[i])
			k = hash_bytes_uint32((uint32) (DatumGetInt64(key[i]) ^ (DatumGetInt64(key[i]) >> 32)));
		else if (ki->typlen[i] == -1)
			k = hash_bytes((unsigned char *) VARDATA_ANY(DatumGetPointer(key[i])),
						   VARSIZE_ANY_EXHDR(DatumGetPointer(key[i])));
		else
			k = hash_bytes((unsigned char *) DatumGetPointer(key[i]), ki->typlen[i]);
		h = hash_combine(h, k);
	}
	return h;
}

static bool
key_equal(KeyInfo *ki, Datum *a, Datum *b)
{
	for (int i = 0; i < ki->n; i++)
	{
		if (!ki->binary[i])
		{
			if (!DatumGetBool(FunctionCall2Coll(&ki->eqfn[i], ki->collation[i], a[i], b[i])))
				return false;
		}
		else if (ki->byval[i])
		{
			if (a[i] != b[i])
				return false;
		}
		else if (ki->typlen[i] == -1)
		{
			Size		la = VARSIZE_ANY_EXHDR(DatumGetPointer(a[i]));

			if (la != VARSIZE_ANY_EXHDR(DatumGetPointer(b[i])) ||
				memcmp(VARDATA_ANY(DatumGetPointer(a[i])), VARDATA_ANY(DatumGetPointer(b[i])), la) != 0)
				return false;
		}
		else if (memcmp(DatumGetPointer(a[i]), DatumGetPointer(b[i]), ki->typlen[i]) != 0)
			return false;
	}
	return true;
}

static KeyMap *
keymap_create(KeyInfo *ki, uint32 expected)
{
	KeyMap	   *m = palloc(sizeof(KeyMap));
	uint32		size = 16;

	while (size < expected * 2)
		size <<= 1;
	m->ki = ki;
	m->size = size;
	m->used = 0;
	m->slots = palloc0(sizeof(KeyMapEntry) * size);
	return m;
}

static KeyMapEntry *
keymap_slot(KeyMap *m, Datum *key, uint32 hash)
{
	uint32		i = hash & (m->size - 1);

	for (;;)
	{
		KeyMapEntry *e = &m->slots[i];

		if (e->key == NULL || (e->hash == hash && key_equal(m->ki, e->key, key)))
			return e;
		i = (i + 1) & (m->size - 1);
	}
}

static void *
keymap_get(KeyMap *m, Datum *key, uint32 hash)
{
	return keymap_slot(m, key, hash)->value;
}

/* key must stay valid as long as the map. */
static void
keymap_put(KeyMap *m, Datum *key, uint32 hash, void *value)
{
	KeyMapEntry *e;

	if ((m->used + 1) * 2 > m->size)
	{
		KeyMapEntry *old = m->slots;
		uint32		oldsize = m->size;

		m->size *= 2;
		m->slots = palloc0(sizeof(KeyMapEntry) * m->size);
		for (uint32 i = 0; i < oldsize; i++)
			if (old[i].key != NULL)
			{
				uint32		j = old[i].hash & (m->size - 1);

				while (m->slots[j].key != NULL)
					j = (j + 1) & (m->size - 1);
				m->slots[j] = old[i];
			}
		pfree(old);
	}
	e = keymap_slot(m, key, hash);
	if (e->key == NULL)
	{
		e->key = key;
		e->hash = hash;
		m->used++;
	}
	e->value = value;
}

/* ---------------------------------------------------------------------
 * The per-backend cache of model and relationship plans
 * ---------------------------------------------------------------------
 */

static void
loader_cache_reset(void)
{
	ListCell   *lc;
	HASHCTL		ctl;

	foreach(lc, kept_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	kept_plans = NIL;
	if (LoaderCacheContext == NULL)
		LoaderCacheContext = AllocSetContextCreate(CacheMemoryContext,
												   "harbor_orm loader cache",
												   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(LoaderCacheContext);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(void *);
	ctl.entrysize = sizeof(ModelInfo);
	ctl.hcxt = LoaderCacheContext;
	model_infos = hash_create("harbor_orm model infos", 32, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.entrysize = sizeof(RelInfo);
	rel_infos = hash_create("harbor_orm relationship infos", 32, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(PlanEntry);
	find_plans = hash_create("harbor_orm find plans", 32, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Drops every kept plan when the registry has changed since they were made. */
static void
loader_cache_check(void)
{
	int			n;

	harbor_model_list(&n);		/* brings the registry up to date */
	if (model_infos == NULL || loader_generation != harbor_registry_generation())
	{
		loader_cache_reset();
		loader_generation = harbor_registry_generation();
	}
}

/*
 * Key lookups get a generic plan straight away: an index scan on = ANY is
 * right whatever the keys, and replanning per call would cost more than
 * the query.  find() keeps the plan cache's choice, as its filters vary.
 */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	MemoryContextSwitchTo(LoaderCacheContext);
	kept_plans = lappend(kept_plans, plan);
	/* SPI leaves its procedure context current: go back to the caller's */
	MemoryContextSwitchTo(caller);
	return plan;
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

static ConvKind
conv_kind(Oid type, Oid *basetype)
{
	Oid			base = getBaseType(type);

	*basetype = base;
	switch (base)
	{
		case BOOLOID:
			return CONV_BOOL;
		case INT2OID:
			return CONV_INT2;
		case INT4OID:
			return CONV_INT4;
		case INT8OID:
			return CONV_INT8;
		case NUMERICOID:
			return CONV_NUMERIC;
		case FLOAT4OID:
		case FLOAT8OID:
			return CONV_FLOAT;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return CONV_TEXT;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return CONV_DATETIME;
		case JSONOID:
		case JSONBOID:
			return CONV_JSONB;
		default:
			break;
	}
	if (OidIsValid(get_element_type(base)) || type_is_rowtype(base) ||
		get_typtype(base) == TYPTYPE_RANGE || get_typtype(base) == TYPTYPE_MULTIRANGE)
		return CONV_JSONB;
	{
		/* to_jsonb uses a cast to json where one exists */
		Oid			castfunc;

		if (find_coercion_pathway(JSONOID, base, COERCION_EXPLICIT, &castfunc) == COERCION_PATH_FUNC)
			return CONV_JSONB;
	}
	return CONV_OTHER;
}

static ModelInfo *
model_info(HarborModel *m)
{
	bool		found;
	ModelInfo  *mi = hash_search(model_infos, &m, HASH_ENTER, &found);
	MemoryContext old;
	StringInfoData buf;
	Oid		   *pktypes;

	if (found)
		return mi;

	old = MemoryContextSwitchTo(LoaderCacheContext);
	PG_TRY();
	{
		mi->ncols = m->ncolumns;
		mi->conv = palloc(sizeof(ConvKind) * Max(m->ncolumns, 1));
		mi->basetype = palloc(sizeof(Oid) * Max(m->ncolumns, 1));
		mi->outfn = palloc0(sizeof(FmgrInfo) * Max(m->ncolumns, 1));
		mi->colkey = palloc0(sizeof(JsonbValue) * Max(m->ncolumns, 1));
		mi->relname = harbor_quoted_relname(m->relid);
		initStringInfo(&buf);
		for (int i = 0; i < m->ncolumns; i++)
		{
			const char *q = quote_identifier(m->columns[i]);

			mi->conv[i] = conv_kind(m->column_types[i], &mi->basetype[i]);
			if (mi->conv[i] == CONV_OTHER || mi->conv[i] == CONV_FLOAT)
			{
				Oid			outfunc;
				bool		isvarlena;

				getTypeOutputInfo(mi->basetype[i], &outfunc, &isvarlena);
				fmgr_info_cxt(outfunc, &mi->outfn[i], LoaderCacheContext);
			}
			mi->colkey[i].type = jbvString;
			mi->colkey[i].val.string.val = m->columns[i];
			mi->colkey[i].val.string.len = strlen(m->columns[i]);
			if (mi->conv[i] == CONV_JSONB)
				appendStringInfo(&buf, "%spg_catalog.to_jsonb(t.%s)", i > 0 ? ", " : "", q);
			else
				appendStringInfo(&buf, "%st.%s", i > 0 ? ", " : "", q);
		}
		mi->select_list = buf.data;

		mi->pk_idx = palloc(sizeof(int) * m->npk);
		pktypes = palloc(sizeof(Oid) * m->npk);
		initStringInfo(&buf);
		for (int k = 0; k < m->npk; k++)
		{
			mi->pk_idx[k] = model_column_index(m, m->pk_columns[k]);
			pktypes[k] = m->column_types[mi->pk_idx[k]];
			appendStringInfo(&buf, "%st.%s", k > 0 ? ", " : "", quote_identifier(m->pk_columns[k]));
		}
		mi->pk_order = buf.data;
		keyinfo_init(&mi->pk, m->npk, pktypes);
		mi->pk_sortable = true;
		mi->pk_intcmp = palloc0(sizeof(bool) * m->npk);
		mi->pk_cmp = palloc0(sizeof(FmgrInfo) * m->npk);
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
					fmgr_info_copy(&mi->pk_cmp[k], &tc->cmp_proc_finfo, LoaderCacheContext);
				else
					mi->pk_sortable = false;
			}
		}
		mi->root_plan = NULL;
		mi->model = m;
	}
	PG_CATCH();
	{
		hash_search(model_infos, &m, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
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
		appendStringInfo(buf, " WHERE %s.%s = ANY ($%d)", alias, quote_identifier(cols[0]), firstparam);
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
		appendStringInfo(buf, "%s%s.%s = k.k%d", i > 0 ? " AND " : "", alias,
						 quote_identifier(cols[i]), i + 1);
}

static Oid *
array_types_of(KeyInfo *ki)
{
	Oid		   *argtypes = palloc(sizeof(Oid) * ki->n);

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

static SPIPlanPtr
model_root_plan(ModelInfo *mi)
{
	if (mi->root_plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT %s FROM %s t", mi->select_list, mi->relname);
		append_key_match(&sql, "t", mi->model->pk_columns, mi->model->npk, 1);
		mi->root_plan = prepare_kept(sql.data, mi->pk.n, array_types_of(&mi->pk),
									 CURSOR_OPT_GENERIC_PLAN);
	}
	return mi->root_plan;
}

static RelInfo *
rel_info(HarborRelationship *r)
{
	bool		found;
	RelInfo    *ri = hash_search(rel_infos, &r, HASH_ENTER, &found);
	MemoryContext old;

	if (found)
		return ri;

	old = MemoryContextSwitchTo(LoaderCacheContext);
	PG_TRY();
	{
		HarborModel *pm = r->model;
		HarborModel *tm = r->target;
		Oid		   *ktypes;
		StringInfoData sql;

		if (tm == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("relationship \"%s\" of model \"%s\" has no registered target",
							r->name, pm->name)));
		ri->parent = model_info(pm);
		ri->target = model_info(tm);
		ri->nkey = r->ncolumns;
		ri->parent_idx = palloc(sizeof(int) * r->ncolumns);
		ktypes = palloc(sizeof(Oid) * r->ncolumns);
		for (int i = 0; i < r->ncolumns; i++)
		{
			ri->parent_idx[i] = model_column_index(pm, r->local_columns[i]);
			ktypes[i] = pm->column_types[ri->parent_idx[i]];
		}
		keyinfo_init(&ri->key, r->ncolumns, ktypes);
		ri->to_many = (r->kind == HARBOR_ONE_TO_MANY || r->kind == HARBOR_MANY_TO_MANY);
		ri->label = psprintf("%s.%s", pm->name, r->name);

		ri->pk_shortcut = (r->kind == HARBOR_MANY_TO_ONE && r->nremote == tm->npk);
		for (int i = 0; ri->pk_shortcut && i < tm->npk; i++)
			if (strcmp(r->remote_columns[i], tm->pk_columns[i]) != 0 ||
				ktypes[i] != ri->target->pk.types[i])
				ri->pk_shortcut = false;

		/*
		 * The parent key comes back first, cast to the parent's column types
		 * so that it hashes like the parent's values.
		 */
		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT ");
		if (r->kind == HARBOR_MANY_TO_MANY)
		{
			for (int i = 0; i < r->ncolumns; i++)
				appendStringInfo(&sql, "s.%s::%s, ", quote_identifier(r->secondary_local_columns[i]),
								 format_type_be_qualified(ktypes[i]));
			appendStringInfo(&sql, "%s FROM %s s JOIN %s t ON ", ri->target->select_list,
							 harbor_quoted_relname(r->secondary), ri->target->relname);
			for (int j = 0; j < r->nremote; j++)
				appendStringInfo(&sql, "%st.%s = s.%s", j > 0 ? " AND " : "",
								 quote_identifier(r->remote_columns[j]),
								 quote_identifier(r->secondary_remote_columns[j]));
			append_key_match(&sql, "s", r->secondary_local_columns, r->ncolumns, 1);
		}
		else
		{
			for (int i = 0; i < r->ncolumns; i++)
				appendStringInfo(&sql, "t.%s::%s, ", quote_identifier(r->remote_columns[i]),
								 format_type_be_qualified(ktypes[i]));
			appendStringInfo(&sql, "%s FROM %s t", ri->target->select_list, ri->target->relname);
			append_key_match(&sql, "t", r->remote_columns, r->ncolumns, 1);
		}
		/* children are sorted per parent in C, cheaper than a Sort node */
		if (ri->to_many && !ri->target->pk_sortable)
			appendStringInfo(&sql, " ORDER BY %s", ri->target->pk_order);
		ri->plan = prepare_kept(sql.data, ri->nkey, array_types_of(&ri->key),
								CURSOR_OPT_GENERIC_PLAN);
		ri->rel = r;
	}
	PG_CATCH();
	{
		hash_search(rel_infos, &r, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return ri;
}

/* ---------------------------------------------------------------------
 * Converting rows
 * ---------------------------------------------------------------------
 */

/* A jsonb datum as a JsonbValue tree (not jbvBinary: the tree is serialised). */
static void
jsonb_to_tree(Jsonb *jb, JsonbValue *out)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbExtractScalar(&jb->root, out);
		return;
	}
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	*out = *res;
}

static void
set_string(JsonbValue *v, char *s)
{
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = strlen(s);
}

static void
convert_value(ModelInfo *mi, int col, Datum d, bool isnull, JsonbValue *v)
{
	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	switch (mi->conv[col])
	{
		case CONV_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(d);
			break;
		case CONV_INT2:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(d));
			break;
		case CONV_INT4:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(d));
			break;
		case CONV_INT8:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(d));
			break;
		case CONV_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);

				if (numeric_is_nan(n) || numeric_is_inf(n))
					set_string(v, DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n))));
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = n;
				}
			}
			break;
		case CONV_FLOAT:
			{
				char	   *s = OutputFunctionCall(&mi->outfn[col], d);
				double		f = (mi->basetype[col] == FLOAT4OID) ?
				DatumGetFloat4(d) : DatumGetFloat8(d);

				if (isnan(f) || isinf(f))
					set_string(v, s);
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
																		 ObjectIdGetDatum(InvalidOid),
																		 Int32GetDatum(-1)));
				}
			}
			break;
		case CONV_TEXT:
			{
				struct varlena *t = PG_DETOAST_DATUM_PACKED(d);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
			}
			break;
		case CONV_DATETIME:
			set_string(v, JsonEncodeDateTime(NULL, d, mi->basetype[col], NULL));
			break;
		case CONV_OTHER:
			set_string(v, OutputFunctionCall(&mi->outfn[col], d));
			break;
		case CONV_JSONB:
			jsonb_to_tree(DatumGetJsonbP(d), v);
			break;
	}
}

static KeyMap *
call_map(LoadCall *lc, List **maps, void *owner, KeyInfo *ki)
{
	ListCell   *cell;
	CallMap    *cm;

	foreach(cell, *maps)
	{
		cm = lfirst(cell);
		if (cm->owner == owner)
			return cm->map;
	}
	cm = palloc(sizeof(CallMap));
	cm->owner = owner;
	cm->map = keymap_create(ki, 64);
	*maps = lappend(*maps, cm);
	return cm->map;
}

static void
check_row_limit(LoadCall *lc, int64 n)
{
	if (n > harbor_load_max_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("harbor.%s would build more than %d rows", lc->function, harbor_load_max_rows),
				 errdetail("The roots and included relationships reach at least " INT64_FORMAT " rows.", n),
				 errhint("Load fewer roots or include fewer relationships, or raise harbor_orm.load_max_rows.")));
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

	/* a key only needs its own memory when the row is new */
	key = mi->pk.n <= INDEX_MAX_KEYS ? keybuf : palloc(sizeof(Datum) * mi->pk.n);
	for (int k = 0; k < mi->pk.n; k++)
	{
		if (nulls[off + mi->pk_idx[k]])
			elog(ERROR, "null primary key in a row of \"%s\"", mi->model->name);
		key[k] = key_normalise(&mi->pk, k, vals[off + mi->pk_idx[k]]);
	}
	h = key_hash(&mi->pk, key);
	row = keymap_get(idmap, key, h);
	if (row != NULL)
	{
		*hit = true;
		return row;
	}
	*hit = false;

	/* one allocation for the row, its values, nulls, JSON and key */
	mem = palloc(MAXALIGN(sizeof(LRow)) + MAXALIGN(sizeof(Datum) * mi->ncols) +
				 MAXALIGN(sizeof(JsonbValue) * mi->ncols) + MAXALIGN(sizeof(Datum) * mi->pk.n) +
				 mi->ncols + 1);
	row = (LRow *) mem;
	mem += MAXALIGN(sizeof(LRow));
	row->values = (Datum *) mem;
	mem += MAXALIGN(sizeof(Datum) * mi->ncols);
	row->json = (JsonbValue *) mem;
	mem += MAXALIGN(sizeof(JsonbValue) * mi->ncols);
	memcpy(mem, key, sizeof(Datum) * mi->pk.n);
	key = (Datum *) mem;
	mem += MAXALIGN(sizeof(Datum) * mi->pk.n);
	row->nulls = (bool *) mem;
	row->stamp = -1;
	memcpy(row->values, vals + off, sizeof(Datum) * mi->ncols);
	memcpy(row->nulls, nulls + off, sizeof(bool) * mi->ncols);
	for (int i = 0; i < mi->ncols; i++)
		convert_value(mi, i, row->values[i], row->nulls[i], &row->json[i]);
	keymap_put(idmap, key, h, row);
	return row;
}

/* Deforms every row of the current SPI result at once. */
static void
deform_result(SPITupleTable *tt, uint64 n, Datum **vals, bool **nulls)
{
	int			natts = tt->tupdesc->natts;

	*vals = palloc(sizeof(Datum) * natts * Max(n, 1));
	*nulls = palloc(sizeof(bool) * natts * Max(n, 1));
	for (uint64 r = 0; r < n; r++)
		heap_deform_tuple(tt->vals[r], tt->tupdesc, *vals + r * natts, *nulls + r * natts);
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

/* Runs a kept plan on key arrays; SPI result stays until SPI_finish. */
static void
run_keyed(LoadCall *lc, IncNode *node, SPIPlanPtr plan, KeyInfo *ki, Datum **keys, int nkeys)
{
	Datum	   *params = palloc(sizeof(Datum) * ki->n);
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeys, 1));
	int			rc;
	int64		room = (int64) harbor_load_max_rows - lc->fetched;

	for (int c = 0; c < ki->n; c++)
	{
		for (int i = 0; i < nkeys; i++)
			elems[i] = keys[i][c];
		params[c] = PointerGetDatum(construct_array(elems, nkeys, ki->types[c], ki->typlen[c],
													ki->byval[c], ki->typalign[c]));
	}
	/* one row more than allowed tells that the limit is exceeded */
	rc = SPI_execute_plan(plan, params, NULL, true, room + 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "harbor.%s: query failed: %s", lc->function, SPI_result_code_string(rc));
	/* SPI leaves its procedure context current; stay in the call's */
	MemoryContextSwitchTo(lc->cxt);
	lc->queries++;
	node->queries++;
	lc->fetched += SPI_processed;
	node->rows += SPI_processed;
	check_row_limit(lc, lc->fetched);
}

/* Loads one include node: one query per chunk of parent keys not yet known. */
static void
load_node(LoadCall *lc, IncNode *node)
{
	RelInfo    *ri = node->ri;
	IncNode	   *parent = node->parent;
	KeyMap	   *links = node->links;
	KeyMap	   *idmap = call_map(lc, &lc->idmaps, ri->target, &ri->target->pk);
	Link	  **plinks = palloc(sizeof(Link *) * Max(parent->ninst, 1));
	Datum	  **pending = palloc(sizeof(Datum *) * Max(parent->ninst, 1));
	int			npending = 0;
	int			chunk = harbor_load_chunk_size;

	for (int p = 0; p < parent->ninst; p++)
	{
		LRow	   *prow = parent->inst[p];
		Datum	   *key = palloc(sizeof(Datum) * ri->nkey);
		bool		hasnull = false;
		uint32		h;
		Link	   *l;

		for (int k = 0; k < ri->nkey; k++)
		{
			if (prow->nulls[ri->parent_idx[k]])
				hasnull = true;
			else
				key[k] = key_normalise(&ri->key, k, prow->values[ri->parent_idx[k]]);
		}
		plinks[p] = NULL;
		if (hasnull)
			continue;
		h = key_hash(&ri->key, key);
		l = keymap_get(links, key, h);
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
		keymap_put(links, key, h, l);
		plinks[p] = l;
		if (ri->pk_shortcut)
		{
			LRow	   *target = keymap_get(idmap, key, h);

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
		SPITupleTable *tt;
		int			natts;
		Datum	   *vals;
		bool	   *nulls;

		run_keyed(lc, node, ri->plan, &ri->key, pending + start, n);
		tt = SPI_tuptable;
		natts = tt->tupdesc->natts;
		deform_result(tt, SPI_processed, &vals, &nulls);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			Datum	   *rv = vals + r * natts;
			bool	   *rn = nulls + r * natts;
			Datum		key[INDEX_MAX_KEYS];
			bool		hit;
			Link	   *l;
			LRow	   *row;

			for (int k = 0; k < ri->nkey; k++)
				key[k] = key_normalise(&ri->key, k, rv[k]);
			l = keymap_get(links, key, key_hash(&ri->key, key));
			if (l == NULL)
				elog(ERROR, "harbor.%s: row of \"%s\" matches no requested key", lc->function, ri->label);
			row = identity_row(lc, ri->target, idmap, rv, rn, ri->nkey, &hit);
			if (hit)
			{
				node->hits++;
				lc->hits++;
			}
			link_add(l, row);
		}
		for (int i = start; i < start + n; i++)
		{
			Link	   *l = keymap_get(links, pending[i], key_hash(&ri->key, pending[i]));

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

static int
jsonb_key_cmp(const void *a, const void *b)
{
	const JsonbValue *ka = &((const OutSlot *) a)->key;
	const JsonbValue *kb = &((const OutSlot *) b)->key;

	if (ka->val.string.len != kb->val.string.len)
		return ka->val.string.len > kb->val.string.len ? 1 : -1;
	return memcmp(ka->val.string.val, kb->val.string.val, ka->val.string.len);
}

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
		n->ri = rel_info(r);
		n->links = call_map(lc, &lc->linkmaps, n->ri, &n->ri->key);
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

/* Every node's output keys, sorted as jsonb stores them. */
static void
prepare_slots(IncNode *n)
{
	ListCell   *cell;
	int			i = 0;

	n->nslots = n->mi->ncols + list_length(n->children);
	n->slots = palloc(sizeof(OutSlot) * Max(n->nslots, 1));
	for (int c = 0; c < n->mi->ncols; c++, i++)
	{
		n->slots[i].key = n->mi->colkey[c];
		n->slots[i].col = c;
		n->slots[i].child = NULL;
	}
	foreach(cell, n->children)
	{
		IncNode	   *c = lfirst(cell);

		set_string(&n->slots[i].key, c->name);
		n->slots[i].col = -1;
		n->slots[i].child = c;
		i++;
		prepare_slots(c);
	}
	qsort(n->slots, n->nslots, sizeof(OutSlot), jsonb_key_cmp);
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
 * Output
 * ---------------------------------------------------------------------
 */

static void
build_object(LoadCall *lc, LRow *row, IncNode *node, JsonbValue *out)
{
	JsonbPair  *pairs;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	lc->built++;
	check_row_limit(lc, lc->built);
	pairs = palloc(sizeof(JsonbPair) * Max(node->nslots, 1));
	for (int i = 0; i < node->nslots; i++)
	{
		OutSlot    *s = &node->slots[i];

		pairs[i].key = s->key;
		pairs[i].order = i;
		if (s->col >= 0)
			pairs[i].value = row->json[s->col];
		else
		{
			IncNode	   *c = s->child;
			RelInfo    *ri = c->ri;
			Link	   *l = NULL;
			Datum		keybuf[INDEX_MAX_KEYS];
			Datum	   *key = ri->nkey <= INDEX_MAX_KEYS ? keybuf : palloc(sizeof(Datum) * ri->nkey);
			bool		hasnull = false;
			JsonbValue *v = &pairs[i].value;

			for (int k = 0; k < ri->nkey; k++)
			{
				if (row->nulls[ri->parent_idx[k]])
					hasnull = true;
				else
					key[k] = key_normalise(&ri->key, k, row->values[ri->parent_idx[k]]);
			}
			if (!hasnull)
				l = keymap_get(c->links, key, key_hash(&ri->key, key));
			if (ri->to_many)
			{
				int			n = l ? l->nrows : 0;

				v->type = jbvArray;
				v->val.array.rawScalar = false;
				v->val.array.nElems = n;
				v->val.array.elems = palloc(sizeof(JsonbValue) * Max(n, 1));
				for (int e = 0; e < n; e++)
					build_object(lc, l->rows[e], c, &v->val.array.elems[e]);
			}
			else if (l != NULL && l->nrows > 0)
				build_object(lc, l->rows[0], c, v);
			else
				v->type = jbvNull;
		}
	}
	out->type = jbvObject;
	out->val.object.nPairs = node->nslots;
	out->val.object.pairs = pairs;
}

static void
append_stats_counts(StringInfo buf, int64 queries, int64 rows, int64 hits)
{
	appendStringInfo(buf, "\"queries\": " INT64_FORMAT ", \"rows_fetched\": " INT64_FORMAT
					 ", \"identity_hits\": " INT64_FORMAT, queries, rows, hits);
}

static void
save_stats(LoadCall *lc)
{
	StringInfoData buf;
	ListCell   *cell;
	MemoryContext old;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"function\": ");
	escape_json(&buf, lc->function);
	appendStringInfoString(&buf, ", \"model\": ");
	escape_json(&buf, lc->root->mi->model->name);
	appendStringInfo(&buf, ", \"roots\": %d, \"objects_built\": " INT64_FORMAT
					 ", \"chunk_size\": %d, ", lc->root->ninst, lc->built, harbor_load_chunk_size);
	append_stats_counts(&buf, lc->queries, lc->fetched, lc->hits);
	appendStringInfoString(&buf, ", \"paths\": [");
	foreach(cell, lc->nodes)
	{
		IncNode	   *n = lfirst(cell);

		if (foreach_current_index(cell) > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"path\": ");
		escape_json(&buf, n->path);
		appendStringInfoString(&buf, ", \"model\": ");
		escape_json(&buf, n->mi->model->name);
		if (n->ri)
		{
			appendStringInfoString(&buf, ", \"relationship\": ");
			escape_json(&buf, n->ri->label);
			appendStringInfoString(&buf, ", \"kind\": ");
			escape_json(&buf, harbor_relkind_name(n->ri->rel->kind));
		}
		appendStringInfo(&buf, ", \"distinct_rows\": %d, ", n->ninst);
		append_stats_counts(&buf, n->queries, n->rows, n->hits);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (last_stats)
		pfree(last_stats);
	last_stats = pstrdup(buf.data);
	MemoryContextSwitchTo(old);
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
begin_call(const char *function, const char *model, ArrayType *include, MemoryContext *callercxt)
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
	loader_cache_check();
	m = harbor_model_lookup(model, false);
	cxt = call_context();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(cxt);
	lc = palloc0(sizeof(LoadCall));
	lc->function = function;
	lc->cxt = cxt;
	build_include_tree(lc, model_info(m), include);
	prepare_slots(lc->root);
	return lc;
}

/* Adds the roots in the current SPI result to the root node. */
static void
take_roots(LoadCall *lc)
{
	IncNode	   *root = lc->root;
	KeyMap	   *idmap = call_map(lc, &lc->idmaps, root->mi, &root->mi->pk);
	SPITupleTable *tt = SPI_tuptable;
	int			natts = tt->tupdesc->natts;
	Datum	   *vals;
	bool	   *nulls;

	deform_result(tt, SPI_processed, &vals, &nulls);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		hit;
		LRow	   *row = identity_row(lc, root->mi, idmap, vals + r * natts, nulls + r * natts, 0, &hit);

		node_add_instance(root, row);
	}
}

/* Builds the array of root objects, ends SPI, returns the jsonb. */
static Datum
finish_call(LoadCall *lc, MemoryContext callercxt, bool single)
{
	JsonbValue	result;
	Jsonb	   *jb = NULL;
	IncNode	   *root = lc->root;

	result.type = jbvArray;
	result.val.array.rawScalar = false;
	result.val.array.nElems = root->ninst;
	result.val.array.elems = palloc(sizeof(JsonbValue) * Max(root->ninst, 1));
	for (int i = 0; i < root->ninst; i++)
		build_object(lc, root->inst[i], root, &result.val.array.elems[i]);
	save_stats(lc);

	MemoryContextSwitchTo(callercxt);
	if (!single)
		jb = JsonbValueToJsonb(&result);
	else if (root->ninst > 0)
		jb = JsonbValueToJsonb(&result.val.array.elems[0]);
	SPI_finish();
	release_call_context(lc->cxt);
	if (jb == NULL)
		return (Datum) 0;
	return JsonbPGetDatum(jb);
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
	KeyMap	   *seen = keymap_create(pk, nelems);
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
			key[k] = key_normalise(pk, k, key[k]);
		}
		h = key_hash(pk, key);
		if (keymap_get(seen, key, h) != NULL)
			continue;
		keymap_put(seen, key, h, key);
		keys[nkeys++] = key;
	}
	*keysp = keys;
	return nkeys;
}

/* load() and get(): roots by primary key, in the order given. */
static Datum
load_by_ids(FunctionCallInfo fcinfo, const char *function, Datum *elems, bool *nulls,
			int nelems, Oid elemtype, ArrayType *include, bool single)
{
	MemoryContext callercxt;
	LoadCall   *lc = begin_call(function, model_arg(fcinfo), include, &callercxt);
	ModelInfo  *mi = lc->root->mi;
	Datum	  **keys;
	int			nkeys = ids_to_keys(mi, elems, nulls, nelems, elemtype, &keys);
	KeyMap	   *idmap = call_map(lc, &lc->idmaps, mi, &mi->pk);
	SPIPlanPtr	plan = model_root_plan(mi);
	int			chunk = harbor_load_chunk_size;

	for (int start = 0; start < nkeys; start += chunk)
	{
		int			n = Min(chunk, nkeys - start);

		int			natts;
		Datum	   *vals;
		bool	   *nulls;

		run_keyed(lc, lc->root, plan, &mi->pk, keys + start, n);
		natts = SPI_tuptable->tupdesc->natts;
		deform_result(SPI_tuptable, SPI_processed, &vals, &nulls);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		hit;

			identity_row(lc, mi, idmap, vals + r * natts, nulls + r * natts, 0, &hit);
		}
	}
	/* in the order of ids; unknown ones are left out */
	for (int i = 0; i < nkeys; i++)
	{
		LRow	   *row = keymap_get(idmap, keys[i], key_hash(&mi->pk, keys[i]));

		if (row != NULL)
			node_add_instance(lc->root, row);
	}
	load_tree(lc);
	return finish_call(lc, callercxt, single);
}

Datum
harbor_load(PG_FUNCTION_ARGS)
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
	PG_RETURN_DATUM(load_by_ids(fcinfo, "load", elems, nulls, nelems, elemtype,
								include_arg(fcinfo, 2), false));
}

Datum
harbor_get(PG_FUNCTION_ARGS)
{
	Datum		elem;
	bool		isnull = PG_ARGISNULL(1);
	Datum		result;

	if (isnull)
	{
		/* nothing to load, but the model must still exist */
		harbor_model_lookup(model_arg(fcinfo), false);
		PG_RETURN_NULL();
	}
	elem = PG_GETARG_DATUM(1);
	result = load_by_ids(fcinfo, "get", &elem, &isnull, 1, get_fn_expr_argtype(fcinfo->flinfo, 1),
						 include_arg(fcinfo, 2), true);
	if (result == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* ---------------------------------------------------------------------
 * find(): a filtered, ordered, limited root query
 * ---------------------------------------------------------------------
 */

static int
find_column(ModelInfo *mi, const char *name)
{
	HarborModel *m = mi->model;

	for (int i = 0; i < m->ncolumns; i++)
		if (strcmp(m->columns[i], name) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("model \"%s\" has no column \"%s\"", m->name, name),
			 errhint("Columns of \"%s\": %s.", m->name, harbor_join_quoted(m->columns, m->ncolumns))));
	return -1;					/* keep compiler quiet */
}

/* Text of a jsonb scalar as the cast from text to the column type reads it. */
static char *
jsonb_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;
	}
}

typedef struct FindQuery
{
	StringInfoData sql;
	int			nparams;
	int			nconds;
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS];
} FindQuery;

static int
add_param(FindQuery *q, Oid type, Datum value, bool isnull)
{
	if (q->nparams >= FUNC_MAX_ARGS - 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("filter has too many conditions"),
				 errdetail("At most %d values can be bound.", FUNC_MAX_ARGS - 2)));
	q->types[q->nparams] = type;
	q->values[q->nparams] = value;
	q->nulls[q->nparams] = isnull ? 'n' : ' ';
	return ++q->nparams;
}

static void
add_condition(FindQuery *q, ModelInfo *mi, int col, const char *op, JsonbValue *v)
{
	const char *qcol = quote_identifier(mi->model->columns[col]);
	Oid			type = mi->model->column_types[col];
	char	   *typname = format_type_be_qualified(type);
	const char *sqlop = NULL;
	char	   *text;
	int			p;

	appendStringInfoString(&q->sql, q->nconds++ > 0 ? " AND " : " WHERE ");

	if (strcmp(op, "is_null") == 0)
	{
		if (v->type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("operator is_null of column \"%s\" takes true or false", mi->model->columns[col])));
		appendStringInfo(&q->sql, "t.%s IS %sNULL", qcol, v->val.boolean ? "" : "NOT ");
		return;
	}
	if (strcmp(op, "in") == 0)
	{
		JsonbIterator *it;
		JsonbValue	e;
		JsonbIteratorToken tok;
		Datum	   *elems;
		bool	   *enulls;
		int			n = 0;
		int			cap = 8;
		int			dims[1];
		int			lbs[1] = {1};
		Oid			arrtype = get_array_type(type);

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("operator in of column \"%s\" takes an array", mi->model->columns[col])));
		if (!OidIsValid(arrtype) || OidIsValid(get_element_type(type)))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("operator in is not supported for column \"%s\" of type %s",
							mi->model->columns[col], format_type_be(type))));
		elems = palloc(sizeof(Datum) * cap);
		enulls = palloc(sizeof(bool) * cap);
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (n == cap)
			{
				cap *= 2;
				elems = repalloc(elems, sizeof(Datum) * cap);
				enulls = repalloc(enulls, sizeof(bool) * cap);
			}
			text = jsonb_scalar_text(&e);
			enulls[n] = (text == NULL);
			elems[n] = text ? CStringGetTextDatum(text) : (Datum) 0;
			n++;
		}
		dims[0] = n;
		p = add_param(q, TEXTARRAYOID,
					  PointerGetDatum(construct_md_array(elems, enulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT)),
					  false);
		appendStringInfo(&q->sql, "t.%s = ANY ($%d::%s[])", qcol, p, typname);
		return;
	}

	if (strcmp(op, "eq") == 0)
		sqlop = "=";
	else if (strcmp(op, "ne") == 0)
		sqlop = "<>";
	else if (strcmp(op, "lt") == 0)
		sqlop = "<";
	else if (strcmp(op, "lte") == 0)
		sqlop = "<=";
	else if (strcmp(op, "gt") == 0)
		sqlop = ">";
	else if (strcmp(op, "gte") == 0)
		sqlop = ">=";
	else if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
	{
		if (TypeCategory(getBaseType(type)) != TYPCATEGORY_STRING)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("operator %s needs a text column, but \"%s\" is of type %s",
							op, mi->model->columns[col], format_type_be(type))));
		sqlop = op[0] == 'l' ? "LIKE" : "ILIKE";
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown filter operator \"%s\" for column \"%s\"", op, mi->model->columns[col]),
				 errhint("Operators: eq, ne, lt, lte, gt, gte, in, like, ilike, is_null.")));

	text = jsonb_scalar_text(v);
	if (text == NULL)
	{
		/* comparing with null: eq and ne mean IS [NOT] NULL, as in SQLAlchemy */
		if (strcmp(op, "eq") == 0 || strcmp(op, "ne") == 0)
		{
			appendStringInfo(&q->sql, "t.%s IS %sNULL", qcol, op[0] == 'e' ? "" : "NOT ");
			return;
		}
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operator %s of column \"%s\" needs a value, not null", op, mi->model->columns[col])));
	}
	p = add_param(q, TEXTOID, CStringGetTextDatum(text), false);
	if (sqlop[0] == 'L' || sqlop[0] == 'I')
		appendStringInfo(&q->sql, "t.%s::pg_catalog.text %s $%d", qcol, sqlop, p);
	else
		appendStringInfo(&q->sql, "t.%s %s $%d::%s", qcol, sqlop, p, typname);
}

static void
add_filter(FindQuery *q, ModelInfo *mi, Jsonb *filter)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(filter))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filter must be a JSON object"),
				 errhint("Map column names to values or to operators, like '{\"price_cents\": {\"lt\": 500}}'.")));
	it = JsonbIteratorInit(&filter->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *colname;
		int			col;

		if (tok != WJB_KEY)
			continue;
		colname = pnstrdup(k.val.string.val, k.val.string.len);
		col = find_column(mi, colname);
		tok = JsonbIteratorNext(&it, &v, true);
		if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		{
			JsonbIterator *oit = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	ok;
			JsonbValue	ov;
			JsonbIteratorToken otok;
			bool		any = false;

			while ((otok = JsonbIteratorNext(&oit, &ok, true)) != WJB_DONE)
			{
				if (otok != WJB_KEY)
					continue;
				JsonbIteratorNext(&oit, &ov, true);
				add_condition(q, mi, col, pnstrdup(ok.val.string.val, ok.val.string.len), &ov);
				any = true;
			}
			if (!any)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("filter on column \"%s\" names no operator", colname)));
		}
		else
			add_condition(q, mi, col, "eq", &v);
	}
}

static void
add_order_by(FindQuery *q, ModelInfo *mi, ArrayType *order_by)
{
	char	  **items = NULL;
	int			n = 0;

	appendStringInfoString(&q->sql, " ORDER BY ");
	if (order_by != NULL)
		items = harbor_text_array_to_cstrings(PointerGetDatum(order_by), &n);
	for (int i = 0; i < n; i++)
	{
		char	   *item = pstrdup(items[i]);
		char	   *dir = NULL;
		char	   *sp;
		int			col;

		while (*item == ' ')
			item++;
		sp = strchr(item, ' ');
		if (sp)
		{
			*sp = '\0';
			dir = sp + 1;
			while (*dir == ' ')
				dir++;
			for (char *e = dir + strlen(dir); e > dir && e[-1] == ' '; e--)
				e[-1] = '\0';
		}
		col = find_column(mi, item);
		if (dir != NULL && *dir != '\0' && pg_strcasecmp(dir, "asc") != 0 && pg_strcasecmp(dir, "desc") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid order_by item \"%s\"", items[i]),
					 errhint("Write a column name, optionally followed by asc or desc.")));
		appendStringInfo(&q->sql, "t.%s%s, ", quote_identifier(mi->model->columns[col]),
						 dir && pg_strcasecmp(dir, "desc") == 0 ? " DESC" : "");
	}
	/* the primary key breaks ties, so that pages are stable */
	appendStringInfoString(&q->sql, mi->pk_order);
}

static SPIPlanPtr
find_plan(FindQuery *q)
{
	uint64		h = hash_bytes_extended((unsigned char *) q->sql.data, q->sql.len, 0);
	bool		found;
	PlanEntry  *e;
	SPIPlanPtr	plan;

	e = hash_search(find_plans, &h, HASH_FIND, NULL);
	if (e != NULL && strcmp(e->sql, q->sql.data) == 0)
		return e->plan;
	if (hash_get_num_entries(find_plans) >= MAX_FIND_PLANS)
	{
		/* many shapes: start over rather than grow without bound */
		HASH_SEQ_STATUS st;
		PlanEntry  *old;

		hash_seq_init(&st, find_plans);
		while ((old = hash_seq_search(&st)) != NULL)
		{
			kept_plans = list_delete_ptr(kept_plans, old->plan);
			SPI_freeplan(old->plan);
			hash_search(find_plans, &old->hash, HASH_REMOVE, NULL);
		}
	}
	plan = prepare_kept(q->sql.data, q->nparams, q->types, 0);
	e = hash_search(find_plans, &h, HASH_ENTER, &found);
	if (found)
	{
		kept_plans = list_delete_ptr(kept_plans, e->plan);
		SPI_freeplan(e->plan);
	}
	e->sql = MemoryContextStrdup(LoaderCacheContext, q->sql.data);
	e->plan = plan;
	return plan;
}

Datum
harbor_find(PG_FUNCTION_ARGS)
{
	MemoryContext callercxt;
	LoadCall   *lc = begin_call("find", model_arg(fcinfo), include_arg(fcinfo, 2), &callercxt);
	ModelInfo  *mi = lc->root->mi;
	FindQuery  *q = palloc0(sizeof(FindQuery));
	int			plim;
	int			poff;
	int			rc;

	initStringInfo(&q->sql);
	appendStringInfo(&q->sql, "SELECT %s FROM %s t", mi->select_list, mi->relname);
	if (!PG_ARGISNULL(1))
		add_filter(q, mi, PG_GETARG_JSONB_P(1));
	add_order_by(q, mi, PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3));
	plim = add_param(q, INT8OID, Int64GetDatum(PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4)), PG_ARGISNULL(4));
	poff = add_param(q, INT8OID, Int64GetDatum(PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5)), false);
	appendStringInfo(&q->sql, " LIMIT $%d OFFSET $%d", plim, poff);

	rc = SPI_execute_plan(find_plan(q), q->values, q->nulls, true, (int64) harbor_load_max_rows + 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "harbor.find: query failed: %s", SPI_result_code_string(rc));
	MemoryContextSwitchTo(lc->cxt);
	lc->queries++;
	lc->root->queries++;
	lc->fetched += SPI_processed;
	lc->root->rows += SPI_processed;
	check_row_limit(lc, lc->fetched);
	take_roots(lc);
	load_tree(lc);
	PG_RETURN_DATUM(finish_call(lc, callercxt, false));
}

Datum
harbor_last_load_stats(PG_FUNCTION_ARGS)
{
	if (last_stats == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(last_stats)));
}
