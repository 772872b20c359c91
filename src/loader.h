/*-------------------------------------------------------------------------
 *
 * loader.h
 *	  Private declarations of the relation loader (loader*.c): what one
 *	  model or relationship compiles to, the key identity map, and the
 *	  conversion of column values to JsonbValues.
 *
 * Model and relationship infos live on the shared per-table cache entries
 * (cache.h, HARBOR_CACHE_LOADER): a model's ModelInfo on its table's
 * entry, each RelInfo on the entry of the relationship's model, depending
 * on the target and association tables.  Their column types come from the
 * catalog when they are built, and every statement's result is checked
 * against them before a datum is read (loader_check_result): a cache says
 * which statement to run, never which type a datum has.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_LOADER_H
#define HARBOR_LOADER_H

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

#include "cache.h"
#include "registry.h"

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
	CONV_JSONB,					/* a jsonb datum, unpacked */
	CONV_TO_JSONB				/* to_jsonb() (outfn), then unpacked */
} ConvKind;

/* Key columns: hashing and equality, binary where that is exact. */
typedef struct KeyInfo
{
	int			n;
	Oid		   *types;
	Oid		   *arraytypes;		/* InvalidOid if none */
	bool	   *binary;			/* equal iff the bytes are equal */
	int16	   *typlen;
	bool	   *byval;
	char	   *typalign;
	FmgrInfo   *hashfn;			/* for the non-binary ones */
	FmgrInfo   *eqfn;
	Oid		   *collation;
} KeyInfo;

/*
 * How to read one model: built from the registry's column names and the
 * catalog's column types, on the table's cache entry.
 */
typedef struct ModelInfo
{
	HarborModel *model;			/* registry snapshot it was built under */
	Oid			relid;
	MemoryContext cxt;			/* the entry's memory */
	HarborCacheEntry *entry;	/* owner of its kept plans */
	int			ncols;
	Oid		   *coltype;		/* each mapped column's type in the catalog,
								 * as statements return it */
	int16	   *coltyplen;
	bool	   *colbyval;
	ConvKind   *conv;
	Oid		   *basetype;
	FmgrInfo   *outfn;			/* output function, or to_jsonb */
	JsonbValue *colkey;			/* column names as jsonb strings */
	int		   *text_order;		/* columns in jsonb key order */
	char	  **keytext;		/* per column: "name": , as JSON text */
	int		   *keytextlen;
	char	   *relname;		/* quoted */
	char	   *select_list;	/* t."a", t."b", ... */
	int		   *pk_idx;			/* pk columns among the mapped ones */
	KeyInfo		pk;
	SPIPlanPtr	root_plan;		/* by primary keys; NULL until used */
	char	   *pk_order;		/* t."id", ... */
	bool		pk_sortable;	/* every pk column has a btree order */
	bool	   *pk_intcmp;		/* compare as int64 Datums */
	FmgrInfo   *pk_cmp;			/* else the btree comparison */
	List	   *rels;			/* RelInfos from this model, once complete */
	HTAB	   *find_plans;		/* find() statements, by a hash of their text */
} ModelInfo;

/* How to load one relationship from one ModelInfo. */
typedef struct RelInfo
{
	HarborRelationship *rel;
	ModelInfo  *parent;
	ModelInfo  *target;
	int			nkey;
	int		   *parent_idx;		/* local columns among the parent's mapped ones */
	KeyInfo		key;			/* typed as the parent's local columns */
	bool		to_many;
	bool		pk_shortcut;	/* remote columns are the target's primary key */
	SPIPlanPtr	plan;
	int			nresult;		/* key columns, then the target's */
	Oid		   *restype;
	char	   *label;			/* model.name, for messages and stats */
} RelInfo;

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

/* ---------------------------------------------------------------------
 * One call (loader.c), and its output (loader_out.c)
 * ---------------------------------------------------------------------
 */

/* What a call returns. */
typedef enum LoadOutput
{
	OUT_JSONB_ARRAY,			/* load, find */
	OUT_JSONB_SINGLE,			/* get */
	OUT_TEXT_ARRAY,				/* load_text, find_text */
	OUT_TEXT_SINGLE				/* get_text */
} LoadOutput;

#define LOAD_OUTPUT_IS_TEXT(o) ((o) == OUT_TEXT_ARRAY || (o) == OUT_TEXT_SINGLE)

/* A row in the identity map. */
typedef struct LRow
{
	Datum	   *values;			/* mapped columns */
	bool	   *nulls;
	JsonbValue *json;			/* mapped columns, converted (jsonb output) */
	int64		textoff;		/* text output: where its text starts in the arena */
	int32	   *textpos;		/* start of each column's "key": value, in
								 * jsonb key order, relative to textoff; one
								 * more entry: the end plus 2 */
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

typedef struct IncNode IncNode;

typedef struct OutSlot
{
	JsonbValue	key;
	int			col;			/* >= 0: mapped column */
	IncNode	   *child;			/* else: relationship */
} OutSlot;

/*
 * Text output: an object is runs of columns (copied from the row's text at
 * once) and relationships, in jsonb key order.
 */
typedef struct OutPiece
{
	int			from;			/* columns from..to, in jsonb key order */
	int			to;
	IncNode	   *child;			/* or a relationship */
	char	   *keytext;		/* its "name": */
	int			keylen;
} OutPiece;

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
	int			npieces;
	OutPiece   *pieces;
	int			ninst;
	int			capinst;
	LRow	  **inst;			/* distinct rows at this node */
	/* statistics */
	int64		queries;
	int64		rows;
	int64		hits;
};

typedef struct LoadCall
{
	const char *function;
	LoadOutput	output;
	MemoryContext cxt;
	IncNode    *root;
	List	   *nodes;			/* breadth first */
	List	   *idmaps;			/* CallMap per model */
	List	   *linkmaps;		/* CallMap per relationship */
	StringInfoData arena;		/* text output: every row's columns */
	int64		fetched;
	int64		built;
	int64		queries;
	int64		hits;
	int			nnodes;
} LoadCall;

/* loader_out.c */
extern void loader_prepare_slots(IncNode *n);
extern void loader_check_row_limit(LoadCall *lc, int64 n);
extern Link *loader_node_link(IncNode *child, LRow *row);
extern void loader_build_object(LoadCall *lc, LRow *row, IncNode *node, JsonbValue *out);
extern void loader_write_object(LoadCall *lc, LRow *row, IncNode *node, StringInfo out);
extern char *loader_stats_text(LoadCall *lc);

/* loader_keys.c */
extern void loader_keyinfo_init(KeyInfo *ki, int n, Oid *types, MemoryContext cxt);
extern uint32 loader_key_hash(KeyInfo *ki, Datum *key);
extern KeyMap *loader_keymap_create(KeyInfo *ki, uint32 expected);
extern void *loader_keymap_get(KeyMap *m, Datum *key, uint32 hash);
extern void loader_keymap_put(KeyMap *m, Datum *key, uint32 hash, void *value);

/* Detoast varlena key values so that binary comparison is exact. */
static inline Datum
loader_key_normalise(KeyInfo *ki, int i, Datum d)
{
	if (ki->typlen[i] == -1)
		return PointerGetDatum(PG_DETOAST_DATUM_PACKED(d));
	return d;
}

/*
 * appendBinaryStringInfo without the call when there is room, for the
 * text output's many short appends (no terminating NUL kept).
 */
static inline void
loader_append(StringInfo buf, const char *data, int n)
{
	if (buf->len + n >= buf->maxlen)
		enlargeStringInfo(buf, n);
	memcpy(buf->data + buf->len, data, n);
	buf->len += n;
}

static inline void
loader_append_char(StringInfo buf, char c)
{
	if (buf->len + 1 >= buf->maxlen)
		enlargeStringInfo(buf, 1);
	buf->data[buf->len++] = c;
}

/* loader_json.c */
extern ConvKind loader_conv_kind(Oid type, Oid *basetype);
extern void loader_convert_value(ModelInfo *mi, int col, Datum d, bool isnull,
								 JsonbValue *v);
extern void loader_set_string(JsonbValue *v, char *s);
extern char *loader_jsonb_scalar_text(JsonbValue *v);
extern void loader_render_row(ModelInfo *mi, Datum *values, bool *nulls,
							  StringInfo arena, int64 *off, int32 *pos);
extern void loader_escape_json(StringInfo buf, const char *s, int len);

/* loader_find.c: find()'s statement, its parameters bound by value */
typedef struct FindQuery
{
	StringInfoData sql;
	int			nparams;
	int			nconds;
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS];
} FindQuery;

extern int	loader_find_add_param(FindQuery *q, Oid type, Datum value, bool isnull);
extern void loader_find_add_filter(FindQuery *q, ModelInfo *mi, Jsonb *filter);
extern void loader_find_add_order_by(FindQuery *q, ModelInfo *mi, ArrayType *order_by);

/* loader_plan.c */
extern void loader_registry_ensure(void);
extern HarborModel *loader_model_lookup(const char *name);
extern ModelInfo *loader_model_info(Oid relid, const char *name);
extern RelInfo *loader_rel_info(ModelInfo *parent, HarborRelationship *r);
extern SPIPlanPtr loader_root_plan(ModelInfo *mi);
extern SPIPlanPtr loader_find_plan(ModelInfo *mi, const char *sql, int nargs,
								   Oid *argtypes);
extern void loader_check_result(TupleDesc desc, int nexpected, Oid *expected,
								const char *function, const char *what);

#endif							/* HARBOR_LOADER_H */
