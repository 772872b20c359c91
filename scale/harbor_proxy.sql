-- scale/harbor_proxy.sql
--
-- harbor_proxy 0.1.0: the proxy side of harbor_orm partitioned with PL/Proxy.
--
-- Run it with psql in an empty proxy database (it needs the plproxy
-- extension, Debian package postgresql-15-plproxy), then name the
-- partitions:
--
--   psql -d proxy -v ON_ERROR_STOP=1 -f scale/harbor_proxy.sql
--   psql -d proxy -c "SELECT harbor_proxy.set_partitions(ARRAY[
--          'host=p0 dbname=shop', 'host=p1 dbname=shop',
--          'host=p2 dbname=shop', 'host=p3 dbname=shop'])"
--
-- Every partition runs harbor_orm unchanged and keeps, in its own stock
-- table, only the items the partition map gives it.  The functions here have
-- the names and signatures of harbor's and route each call with PL/Proxy:
-- item calls to the partition that owns the item, order calls to every
-- partition.  docs/scale-out.md documents the map and what each call
-- guarantees.
--
-- Portions Copyright (c) 2026, the harbor_orm authors

\set ON_ERROR_STOP on

CREATE EXTENSION IF NOT EXISTS plproxy;
CREATE SCHEMA harbor_proxy;

CREATE FUNCTION harbor_proxy.version() RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT '0.1.0' $$;

-- The partitions' result row, column for column as harbor.stock_reservations.
CREATE TYPE harbor_proxy.stock_reservations AS (
    id         bigint,
    model      text,
    item_id    bigint,
    order_id   text,
    qty        integer,
    status     text,
    created_at timestamptz,
    expires_at timestamptz,
    closed_at  timestamptz
);

-- ---------------------------------------------------------------------
-- The partition map
--
-- The cluster is the SQL/MED server harbor_partitions, with options p0,
-- p1, ... (libpq connection strings).  An item lives on partition
-- hashint8(item_id) & (count - 1): PL/Proxy's default mapping, which wants a
-- power-of-two count.  partition_of() is the same formula for SQL callers.
-- ---------------------------------------------------------------------
CREATE FUNCTION harbor_proxy.set_partitions(connstrs text[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   integer := coalesce(cardinality(connstrs), 0);
    opt text := '';
BEGIN
    IF n = 0 OR (n & (n - 1)) <> 0 THEN
        RAISE EXCEPTION 'the number of partitions must be a power of two, not %', n
            USING ERRCODE = '22023',
                  HINT = 'PL/Proxy maps hashint8(item_id) & (count - 1) to a partition.';
    END IF;
    FOR i IN 1 .. n LOOP
        opt := opt || format('%sp%s %L', CASE WHEN i > 1 THEN ', ' END, i - 1, connstrs[i]);
    END LOOP;
    SET LOCAL client_min_messages = warning;
    DROP SERVER IF EXISTS harbor_partitions CASCADE;
    EXECUTE format('CREATE SERVER harbor_partitions FOREIGN DATA WRAPPER plproxy OPTIONS (%s)', opt);
    CREATE USER MAPPING FOR PUBLIC SERVER harbor_partitions;
    RETURN n;
END
$$;
COMMENT ON FUNCTION harbor_proxy.set_partitions(text[]) IS
    'define the partitions (a power-of-two count of connection strings, partition 0 first)';

CREATE FUNCTION harbor_proxy.partition_count() RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::integer
      FROM pg_foreign_server s, unnest(s.srvoptions) o
     WHERE s.srvname = 'harbor_partitions' AND o ~ '^p[0-9]+='
$$;

CREATE FUNCTION harbor_proxy.partition_of(item_id bigint) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashint8(item_id) & (harbor_proxy.partition_count() - 1) $$;
COMMENT ON FUNCTION harbor_proxy.partition_of(bigint) IS
    'the partition that owns an item: hashint8(item_id) & (partition_count() - 1)';

-- ---------------------------------------------------------------------
-- Item calls: one partition, exactly harbor's semantics
-- ---------------------------------------------------------------------
CREATE FUNCTION harbor_proxy.reserve_stock(item_id bigint, qty integer, order_id text,
                                           ttl interval DEFAULT '15 minutes',
                                           model text DEFAULT NULL)
    RETURNS harbor_proxy.stock_reservations
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON hashint8(item_id);
    TARGET harbor.reserve_stock;
$$;

CREATE FUNCTION harbor_proxy.stock_status(item_id bigint, model text DEFAULT NULL)
    RETURNS TABLE (on_hand bigint, reserved bigint, confirmed bigint, available bigint)
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON hashint8(item_id);
    TARGET harbor.stock_status;
$$;

-- ---------------------------------------------------------------------
-- Internal routing helpers: part is a partition number (0 .. count - 1),
-- which PL/Proxy's mapping leaves as it is.
-- ---------------------------------------------------------------------
CREATE FUNCTION harbor_proxy._reserve_many_on(part integer, order_id text, items jsonb,
                                              ttl interval, model text)
    RETURNS SETOF harbor_proxy.stock_reservations
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON part;
    SELECT r.id, r.model, r.item_id, r.order_id, r.qty, r.status,
           r.created_at, r.expires_at, r.closed_at
      FROM harbor.reserve_many(order_id, items, ttl, model) r;
$$;

-- Releases the order's holds on the items of the lines, on one partition.
CREATE FUNCTION harbor_proxy._release_lines_on(part integer, order_id text, items jsonb)
    RETURNS integer
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON part;
    SELECT coalesce(sum(harbor.release_reservation(order_id, i.item_id)), 0)::integer
      FROM (SELECT DISTINCT (l.value->>'item_id')::bigint AS item_id
              FROM jsonb_array_elements(items) l) i;
$$;

CREATE FUNCTION harbor_proxy._release_on(part integer, order_id text, item_id bigint)
    RETURNS integer
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON part;
    SELECT harbor.release_reservation(order_id, item_id);
$$;

CREATE FUNCTION harbor_proxy._release_all(order_id text)
    RETURNS SETOF integer
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    SELECT harbor.release_reservation(order_id);
$$;

CREATE FUNCTION harbor_proxy._extend_all(order_id text, ttl interval)
    RETURNS SETOF integer
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    TARGET harbor.extend_reservation;
$$;

-- The order's state on every partition: active unexpired holds, confirmed
-- holds, and items whose latest hold is lost (expired, or active past its
-- expiry), as harbor.confirm_reservation judges them.
CREATE FUNCTION harbor_proxy._order_state_all(order_id text,
                                              OUT active integer, OUT confirmed integer,
                                              OUT lost integer, OUT lost_items text)
    RETURNS SETOF record
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    SELECT count(*) FILTER (WHERE s.status = 'active' AND NOT s.lost)::integer AS active,
           count(*) FILTER (WHERE s.status = 'confirmed')::integer AS confirmed,
           count(*) FILTER (WHERE s.lost)::integer AS lost,
           string_agg(format('item %s of model "%s"', s.item_id, s.model), ', ')
               FILTER (WHERE s.lost) AS lost_items
      FROM (SELECT DISTINCT ON (r.model, r.item_id) r.model, r.item_id, r.status,
                   r.status = 'expired' OR (r.status = 'active' AND r.expires_at <= now()) AS lost
              FROM harbor.stock_reservations r WHERE r.order_id = order_id
             ORDER BY r.model, r.item_id, r.id DESC) s;
$$;

-- Confirms on every partition where the order holds or held stock, 0 where it
-- holds nothing (no holds, or only released ones), which harbor would refuse.
CREATE FUNCTION harbor_proxy._confirm_all(order_id text)
    RETURNS SETOF integer
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    SELECT CASE WHEN EXISTS (SELECT 1 FROM harbor.stock_reservations r
                              WHERE r.order_id = order_id
                                AND r.status IN ('active', 'confirmed', 'expired'))
                THEN harbor.confirm_reservation(order_id) ELSE 0 END;
$$;

CREATE FUNCTION harbor_proxy._sweep_all(batch_size integer)
    RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    TARGET harbor.sweep_expired;
$$;

-- ---------------------------------------------------------------------
-- Order calls
-- ---------------------------------------------------------------------

-- All lines or none, across partitions, by try-confirm-cancel: each
-- partition's part is one harbor.reserve_many (all-or-nothing there,
-- idempotent on the order); on the first refusal or failure the parts
-- already taken are released and the error is raised again.  If the proxy
-- dies mid-way, the parts taken expire after ttl.
CREATE FUNCTION harbor_proxy.reserve_many(order_id text, items jsonb,
                                          ttl interval DEFAULT '15 minutes',
                                          model text DEFAULT NULL)
    RETURNS SETOF harbor_proxy.stock_reservations
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts     integer[];
    part_items jsonb[];
    done      integer[] := '{}';
    p         integer;
    v_state   text;
    v_msg     text;
    v_detail  text;
    v_hint    text;
    undo_note text := '';
BEGIN
    IF order_id IS NULL OR items IS NULL OR ttl IS NULL THEN
        RAISE EXCEPTION 'order_id, items and ttl must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF jsonb_typeof(items) <> 'array' OR jsonb_array_length(items) = 0 THEN
        RAISE EXCEPTION 'items must be a non-empty JSON array' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(items) l
                WHERE jsonb_typeof(l.value) <> 'object'
                   OR jsonb_typeof(l.value->'item_id') IS DISTINCT FROM 'number'
                   OR (l.value->>'item_id') !~ '^-?[0-9]+$') THEN
        RAISE EXCEPTION 'every line of items must be an object with an integer "item_id"'
            USING ERRCODE = '22023';
    END IF;

    SELECT array_agg(s.part ORDER BY s.part), array_agg(s.lines ORDER BY s.part)
      INTO parts, part_items
      FROM (SELECT harbor_proxy.partition_of((l.value->>'item_id')::bigint) AS part,
                   jsonb_agg(l.value ORDER BY l.ordinality) AS lines
              FROM jsonb_array_elements(items) WITH ORDINALITY l
             GROUP BY 1) s;

    -- one partition: harbor's own all-or-nothing, nothing to compensate
    IF cardinality(parts) = 1 THEN
        RETURN QUERY SELECT * FROM harbor_proxy._reserve_many_on(parts[1], order_id, items, ttl, model);
        RETURN;
    END IF;

    FOR i IN 1 .. cardinality(parts) LOOP
        BEGIN
            RETURN QUERY SELECT * FROM harbor_proxy._reserve_many_on(parts[i], order_id,
                                                                     part_items[i], ttl, model);
            done := done || i;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
            -- cancel: give back what the earlier partitions took
            FOREACH p IN ARRAY done LOOP
                BEGIN
                    PERFORM harbor_proxy._release_lines_on(parts[p], order_id, part_items[p]);
                EXCEPTION WHEN OTHERS THEN
                    undo_note := undo_note || format(' The part on partition %s could not be released'
                                                     ' (%s); it expires after %s.',
                                                     parts[p], SQLERRM, ttl);
                END;
            END LOOP;
            RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg,
                DETAIL = coalesce(v_detail, '') || format(' Refused on partition %s.', parts[i]) || undo_note,
                HINT = coalesce(v_hint, 'Nothing was reserved.');
        END;
    END LOOP;
END
$$;

CREATE FUNCTION harbor_proxy.confirm_reservation(order_id text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_active    integer;
    n_confirmed integer;
    n_lost      integer;
    lost_list   text;
    n           integer;
BEGIN
    IF order_id IS NULL THEN
        RAISE EXCEPTION 'order_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- try: nothing is confirmed anywhere if a partition already sees a lost hold
    SELECT sum(s.active), sum(s.confirmed), sum(s.lost), string_agg(s.lost_items, ', ')
      INTO n_active, n_confirmed, n_lost, lost_list
      FROM harbor_proxy._order_state_all(order_id) s;
    IF n_lost > 0 THEN
        RAISE EXCEPTION 'order "%" no longer holds stock it reserved', order_id
            USING ERRCODE = 'HB003', DETAIL = format('Expired holds: %s.', lost_list),
                  HINT = 'Reserve the items again, then confirm.';
    END IF;
    IF n_active = 0 AND n_confirmed = 0 THEN
        RAISE EXCEPTION 'order "%" holds no stock to confirm', order_id USING ERRCODE = 'HB003';
    END IF;
    -- confirm: per partition all-or-nothing; see docs/scale-out.md for the window
    SELECT coalesce(sum(c), 0) INTO n FROM harbor_proxy._confirm_all(order_id) c;
    RETURN n;
END
$$;

CREATE FUNCTION harbor_proxy.release_reservation(order_id text, item_id bigint DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF item_id IS NOT NULL THEN
        RETURN harbor_proxy._release_on(harbor_proxy.partition_of(item_id), order_id, item_id);
    END IF;
    RETURN (SELECT coalesce(sum(r), 0) FROM harbor_proxy._release_all(order_id) r);
END
$$;

CREATE FUNCTION harbor_proxy.extend_reservation(order_id text, ttl interval) RETURNS integer
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(sum(r), 0)::integer FROM harbor_proxy._extend_all(order_id, ttl) r $$;

CREATE FUNCTION harbor_proxy.sweep_expired(batch_size integer DEFAULT 1000) RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(sum(r), 0)::bigint FROM harbor_proxy._sweep_all(batch_size) r $$;

CREATE FUNCTION harbor_proxy.check_stock()
    RETURNS TABLE (model text, item_id bigint, problem text)
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON ALL;
    TARGET harbor.check_stock;
$$;

-- Items kept on a partition the map does not give them to (after a change
-- of the map, or a load to the wrong partition): part, model, item_id.
CREATE FUNCTION harbor_proxy._items_on(part integer, OUT model text, OUT item_id bigint)
    RETURNS SETOF record
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_partitions';
    RUN ON part;
    SELECT r.model, r.item_id FROM harbor.stock_reservations r
     WHERE r.status IN ('active', 'confirmed')
     GROUP BY 1, 2;
$$;

CREATE FUNCTION harbor_proxy.check_placement()
    RETURNS TABLE (part integer, model text, item_id bigint)
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p, i.model, i.item_id
      FROM generate_series(0, harbor_proxy.partition_count() - 1) p,
           LATERAL harbor_proxy._items_on(p) i
     WHERE harbor_proxy.partition_of(i.item_id) <> p
     ORDER BY 1, 2, 3
$$;
COMMENT ON FUNCTION harbor_proxy.check_placement() IS
    'holds (active or confirmed) on a partition that does not own their item';

-- ---------------------------------------------------------------------
-- Catalog reads on replicas
--
-- The cluster harbor_catalog lists streaming standbys (or the primary) of
-- the catalog database; each read goes to any one of them.  The loader only
-- reads, so a standby returns what the primary would, as of its replay.
-- Any number of replicas: the server uses modular_mapping.
-- ---------------------------------------------------------------------
CREATE FUNCTION harbor_proxy.set_catalog_replicas(connstrs text[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   integer := coalesce(cardinality(connstrs), 0);
    opt text := 'modular_mapping ''1''';
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'at least one catalog replica is needed' USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. n LOOP
        opt := opt || format(', p%s %L', i - 1, connstrs[i]);
    END LOOP;
    SET LOCAL client_min_messages = warning;
    DROP SERVER IF EXISTS harbor_catalog CASCADE;
    EXECUTE format('CREATE SERVER harbor_catalog FOREIGN DATA WRAPPER plproxy OPTIONS (%s)', opt);
    CREATE USER MAPPING FOR PUBLIC SERVER harbor_catalog;
    RETURN n;
END
$$;
COMMENT ON FUNCTION harbor_proxy.set_catalog_replicas(text[]) IS
    'define the catalog replicas that load, get and find read from (any count)';

-- harbor's ids are polymorphic; through the proxy they are bigint.
CREATE FUNCTION harbor_proxy.load(model text, ids bigint[], include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_catalog';
    RUN ON ANY;
    SELECT harbor.load(model, ids, include);
$$;

CREATE FUNCTION harbor_proxy.get(model text, id bigint, include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_catalog';
    RUN ON ANY;
    SELECT harbor.get(model, id, include);
$$;

CREATE FUNCTION harbor_proxy.find(model text, filter jsonb DEFAULT '{}', include text[] DEFAULT '{}',
                                  order_by text[] DEFAULT NULL, lim integer DEFAULT NULL,
                                  offs integer DEFAULT 0)
    RETURNS jsonb
    LANGUAGE plproxy
AS $$
    CLUSTER 'harbor_catalog';
    RUN ON ANY;
    SELECT harbor.find(model, filter, include, order_by, lim, offs);
$$;

-- Only the owner (re)defines the clusters; callers need USAGE on the schema,
-- granted by the operator, and the partitions' own privileges.
REVOKE EXECUTE ON FUNCTION harbor_proxy.set_partitions(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION harbor_proxy.set_catalog_replicas(text[]) FROM PUBLIC;
