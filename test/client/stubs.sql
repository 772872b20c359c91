-- Stand-ins for server functions that are not installed yet (the client
-- tests exercise the client's mapping of their documented signatures and
-- errors).  Loaded only when harbor.reserve_stock / harbor.load are absent.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT to_regprocedure('harbor.reserve_stock(bigint,integer,text,interval,text)') IS NULL AS need_reserve,
       to_regprocedure('harbor.load(text,anyarray,text[])') IS NULL AS need_load \gset
\if :need_reserve
\else
SELECT harbor.enable_stock('ct_items');
\endif
\if :need_reserve
CREATE TABLE client_t.holds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, model text, item_id bigint,
    order_id text, qty integer, status text, created_at timestamptz DEFAULT now(),
    expires_at timestamptz, closed_at timestamptz);
CREATE FUNCTION harbor.reserve_stock(item_id bigint, qty integer, order_id text,
        ttl interval DEFAULT '15 minutes', model text DEFAULT NULL)
    RETURNS client_t.holds LANGUAGE plpgsql AS $$
DECLARE r client_t.holds; avail integer;
BEGIN
  IF qty IS NULL OR order_id IS NULL OR ttl IS NULL THEN
    RAISE EXCEPTION 'arguments must not be null' USING ERRCODE = '22004'; END IF;
  IF qty <= 0 OR order_id = '' OR ttl <= interval '0' THEN
    RAISE EXCEPTION 'qty, ttl and order_id must be positive / non-empty' USING ERRCODE = '22023'; END IF;
  SELECT stock_qty INTO avail FROM client_t.items i WHERE i.id = reserve_stock.item_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN RAISE EXCEPTION 'unknown item %', item_id USING ERRCODE = 'HB002'; END IF;
  IF avail < qty THEN
    RAISE EXCEPTION 'insufficient stock for item %', item_id USING ERRCODE = 'HB001',
      DETAIL = format('Requested %s, available %s.', qty, avail); END IF;
  UPDATE client_t.items i SET stock_qty = stock_qty - qty WHERE i.id = reserve_stock.item_id;
  INSERT INTO client_t.holds (model, item_id, order_id, qty, status, expires_at)
  VALUES ('ct_items', item_id, order_id, qty, 'active', now() + ttl) RETURNING * INTO r;
  RETURN r;
END $$;
CREATE FUNCTION harbor.reserve_many(order_id text, items jsonb, ttl interval DEFAULT '15 minutes',
        model text DEFAULT NULL) RETURNS SETOF client_t.holds LANGUAGE plpgsql AS $$
DECLARE l record;
BEGIN
  FOR l IN SELECT (e->>'item_id')::bigint AS item_id, sum((e->>'qty')::integer)::integer AS qty
             FROM jsonb_array_elements(items) e GROUP BY 1 ORDER BY 1 LOOP
    RETURN NEXT harbor.reserve_stock(l.item_id, l.qty, order_id, ttl, model);
  END LOOP;
END $$;
CREATE FUNCTION harbor.confirm_reservation(order_id text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  UPDATE client_t.holds h SET status = 'confirmed', closed_at = now()
   WHERE h.order_id = confirm_reservation.order_id AND status = 'active';
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 THEN RAISE EXCEPTION 'order % holds no active reservation', order_id USING ERRCODE = 'HB003'; END IF;
  RETURN n;
END $$;
CREATE FUNCTION harbor.release_reservation(order_id text, item_id bigint DEFAULT NULL)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  WITH r AS (UPDATE client_t.holds h SET status = 'released', closed_at = now()
              WHERE h.order_id = release_reservation.order_id AND h.status = 'active'
                AND (release_reservation.item_id IS NULL OR h.item_id = release_reservation.item_id)
             RETURNING h.item_id, h.qty)
  UPDATE client_t.items i SET stock_qty = stock_qty + r.qty FROM r WHERE i.id = r.item_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
CREATE FUNCTION harbor.extend_reservation(order_id text, ttl interval) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  IF ttl <= interval '0' THEN RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = '22023'; END IF;
  UPDATE client_t.holds h SET expires_at = now() + ttl
   WHERE h.order_id = extend_reservation.order_id AND status = 'active';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
CREATE FUNCTION harbor.sweep_expired(batch_size integer DEFAULT 1000) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  WITH r AS (UPDATE client_t.holds h SET status = 'expired', closed_at = now()
              WHERE h.status = 'active' AND h.expires_at < now() RETURNING h.item_id, h.qty)
  UPDATE client_t.items i SET stock_qty = stock_qty + r.qty FROM r WHERE i.id = r.item_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
CREATE FUNCTION harbor.stock_status(item_id bigint, model text DEFAULT NULL)
    RETURNS TABLE (on_hand bigint, reserved bigint, confirmed bigint, available bigint)
    LANGUAGE sql AS $$
  SELECT i.stock_qty + coalesce(sum(h.qty) FILTER (WHERE h.status IN ('active', 'confirmed')), 0),
         coalesce(sum(h.qty) FILTER (WHERE h.status = 'active'), 0),
         coalesce(sum(h.qty) FILTER (WHERE h.status = 'confirmed'), 0), i.stock_qty
    FROM client_t.items i LEFT JOIN client_t.holds h ON h.item_id = i.id
   WHERE i.id = stock_status.item_id GROUP BY i.stock_qty $$;
\endif
\if :need_load
CREATE FUNCTION harbor.load(model text, ids anyarray, include text[] DEFAULT '{}') RETURNS jsonb
    LANGUAGE plpgsql AS $$
DECLARE m record; result jsonb;
BEGIN
  SELECT * INTO m FROM harbor.models WHERE name = model;
  IF NOT FOUND THEN RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = '42704'; END IF;
  EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY array_position($1, t.%I)), ''[]'')
                    FROM %s t WHERE t.%I = ANY ($1)', m.primary_key[1], m.relation, m.primary_key[1])
     INTO result USING ids;
  RETURN result;
END $$;
CREATE FUNCTION harbor.get(model text, id anyelement, include text[] DEFAULT '{}') RETURNS jsonb
    LANGUAGE sql AS $$ SELECT harbor.load(model, ARRAY[id], include) -> 0 $$;
CREATE FUNCTION harbor.find(model text, filter jsonb DEFAULT '{}', include text[] DEFAULT '{}',
        order_by text[] DEFAULT NULL, lim integer DEFAULT NULL, offs integer DEFAULT 0)
    RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE m record; result jsonb; k text;
BEGIN
  SELECT * INTO m FROM harbor.models WHERE name = model;
  IF NOT FOUND THEN RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = '42704'; END IF;
  FOR k IN SELECT jsonb_object_keys(filter) LOOP
    IF NOT k = ANY (m.columns) THEN
      RAISE EXCEPTION 'column "%" is not mapped', k USING ERRCODE = '42703'; END IF;
  END LOOP;
  EXECUTE format('SELECT coalesce(jsonb_agg(x ORDER BY (x->>%L)::numeric), ''[]'') FROM
                    (SELECT to_jsonb(t) AS x FROM %s t WHERE to_jsonb(t) @> $1
                      ORDER BY t.%I LIMIT $2 OFFSET $3) s',
                 m.primary_key[1], m.relation, m.primary_key[1])
     INTO result USING filter, lim, offs;
  RETURN result;
END $$;
\endif
