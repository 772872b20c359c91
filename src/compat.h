/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Version-compatibility shims for harbor_orm.
 *
 * Every difference between supported PostgreSQL major versions is handled
 * here and nowhere else.  The build stops on a version this file has not
 * been checked against.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_COMPAT_H
#define HARBOR_COMPAT_H

#if PG_VERSION_NUM < 130000 || PG_VERSION_NUM >= 180000
#error "harbor_orm supports PostgreSQL 13 to 17"
#endif

/* MarkGUCPrefixReserved() replaced EmitWarningsOnPlaceholders() in 15. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* shmem_request_hook appeared in 15; before that, request in _PG_init. */
#if PG_VERSION_NUM >= 150000
#define HARBOR_HAS_SHMEM_REQUEST_HOOK 1
#endif

/* InitMaterializedSRF() appeared in 15; earlier versions set it up by hand. */
#if PG_VERSION_NUM < 150000
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/tuplestore.h"

static inline void
InitMaterializedSRF(FunctionCallInfo fcinfo, bits32 flags)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	tupdesc;
	MemoryContext oldcxt;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	MemoryContextSwitchTo(oldcxt);
}
#endif

/* pg_class_ownercheck() gave way to object_ownercheck() in 16. */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class.h"
#include "utils/acl.h"
#define pg_class_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#endif

#endif							/* HARBOR_COMPAT_H */
