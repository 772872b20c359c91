/*-------------------------------------------------------------------------
 *
 * loader_keys.c
 *	  Key tuples of the relation loader: hashing, equality and the
 *	  open-addressing map that the identity map and the relationship link
 *	  maps are made of.
 *
 * Keys compare by their bytes where that is exact for the type (integers,
 * text, uuid ...), otherwise through the type's hash and equality
 * functions from the type cache.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "loader.h"

void
loader_keyinfo_init(KeyInfo *ki, int n, Oid *types, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	ki->n = n;
	ki->types = palloc(sizeof(Oid) * Max(n, 1));
	ki->arraytypes = palloc(sizeof(Oid) * Max(n, 1));
	ki->binary = palloc(sizeof(bool) * Max(n, 1));
	ki->typlen = palloc(sizeof(int16) * Max(n, 1));
	ki->byval = palloc(sizeof(bool) * Max(n, 1));
	ki->typalign = palloc(sizeof(char) * Max(n, 1));
	ki->hashfn = palloc0(sizeof(FmgrInfo) * Max(n, 1));
	ki->eqfn = palloc0(sizeof(FmgrInfo) * Max(n, 1));
	ki->collation = palloc(sizeof(Oid) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		Oid			base = getBaseType(types[i]);

		ki->types[i] = types[i];
		ki->arraytypes[i] = get_array_type(types[i]);
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
					fmgr_info_copy(&ki->hashfn[i], &tc->hash_proc_finfo, cxt);
					fmgr_info_copy(&ki->eqfn[i], &tc->eq_opr_finfo, cxt);
				}
		}
	}
	MemoryContextSwitchTo(old);
}

uint32
loader_key_hash(KeyInfo *ki, Datum *key)
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

KeyMap *
loader_keymap_create(KeyInfo *ki, uint32 expected)
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

void *
loader_keymap_get(KeyMap *m, Datum *key, uint32 hash)
{
	return keymap_slot(m, key, hash)->value;
}

/* key must stay valid as long as the map. */
void
loader_keymap_put(KeyMap *m, Datum *key, uint32 hash, void *value)
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
