-- =====================================================================
-- Batched relation loading (src/loader.c)
-- =====================================================================
-- Run with the caller's privileges: every query they issue is subject to
-- the caller's SELECT privileges and row-level security policies.

CREATE FUNCTION harbor.load(model text, ids anyarray, include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_load';
COMMENT ON FUNCTION harbor.load(text, anyarray, text[]) IS
    'rows of a model by primary key, in the order of ids, with the included relationships, as a JSON array';

CREATE FUNCTION harbor.get(model text, id anyelement, include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_get';
COMMENT ON FUNCTION harbor.get(text, anyelement, text[]) IS
    'one row of a model by primary key with the included relationships, or NULL';

CREATE FUNCTION harbor.find(model text, filter jsonb DEFAULT '{}', include text[] DEFAULT '{}',
                            order_by text[] DEFAULT NULL, lim integer DEFAULT NULL,
                            offs integer DEFAULT 0)
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_find';
COMMENT ON FUNCTION harbor.find(text, jsonb, text[], text[], integer, integer) IS
    'rows of a model matching a filter, ordered and limited, with the included relationships, as a JSON array';

CREATE FUNCTION harbor.last_load_stats()
    RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_last_load_stats';
COMMENT ON FUNCTION harbor.last_load_stats() IS
    'queries, rows fetched and identity-map hits of the last load, get or find of this session, per path';

