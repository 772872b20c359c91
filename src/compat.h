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

#endif							/* HARBOR_COMPAT_H */
