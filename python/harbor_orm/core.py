"""Stock reservation calls over psycopg 3, psycopg2 or SQLAlchemy.

Each call is one statement in the caller's transaction: harbor_orm never
commits or rolls back for the caller (``retry_transaction`` is the one
exception: it owns the transaction it starts).
"""
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from . import _conn
from .errors import RETRYABLE, TransactionInProgress, sqlstate_of

__all__ = ["Reservation", "StockStatus", "reserve_stock", "reserve_many", "confirm",
           "release", "extend", "stock_status", "sweep_expired", "retry_transaction"]

DEFAULT_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class Reservation:
    """A row of ``harbor.stock_reservations``."""
    id: int
    model: str
    item_id: int
    order_id: str
    qty: int
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: Optional[datetime]


@dataclass(frozen=True)
class StockStatus:
    """``harbor.stock_status()``: on_hand = available + reserved."""
    on_hand: int
    reserved: int
    confirmed: int
    available: int


_RES_FIELDS = ("id", "model", "item_id", "order_id", "qty", "status",
               "created_at", "expires_at", "closed_at")
_RES_COLS = ", ".join(_RES_FIELDS)


def _ttl(ttl):
    if isinstance(ttl, timedelta):
        return ttl
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        return timedelta(seconds=ttl)
    if ttl is None:
        return None
    raise TypeError("ttl must be a timedelta or a number of seconds")


def _items(items):
    if isinstance(items, dict):
        pairs = items.items()
    else:
        pairs = items
    out = []
    for p in pairs:
        if isinstance(p, dict):
            out.append({"item_id": p["item_id"], "qty": p["qty"]})
        else:
            item, qty = p
            out.append({"item_id": item, "qty": qty})
    return json.dumps(out)


def _reservations(cols, rows):
    return [Reservation(**dict(zip(cols, r))) for r in rows]


# Every call is a (sql, params, convert) triple, shared with harbor_orm.aio.

def _q_reserve_stock(item_id, qty, order_id, ttl=DEFAULT_TTL, model=None):
    sql = ("SELECT " + _RES_COLS + " FROM harbor.reserve_stock(CAST(%(item)s AS bigint), "
           "CAST(%(qty)s AS integer), CAST(%(order)s AS text), CAST(%(ttl)s AS interval), "
           "CAST(%(model)s AS text))")
    return sql, {"item": item_id, "qty": qty, "order": order_id, "ttl": _ttl(ttl),
                 "model": model}, lambda c, r: _reservations(c, r)[0]


def _q_reserve_many(order_id, items, ttl=DEFAULT_TTL, model=None):
    sql = ("SELECT " + _RES_COLS + " FROM harbor.reserve_many(CAST(%(order)s AS text), "
           "CAST(%(items)s AS jsonb), CAST(%(ttl)s AS interval), CAST(%(model)s AS text))")
    return sql, {"order": order_id, "items": _items(items), "ttl": _ttl(ttl),
                 "model": model}, _reservations


def _scalar(c, r):
    return r[0][0]


def _q_confirm(order_id):
    return ("SELECT harbor.confirm_reservation(CAST(%(order)s AS text))",
            {"order": order_id}, _scalar)


def _q_release(order_id, item_id=None):
    return ("SELECT harbor.release_reservation(CAST(%(order)s AS text), CAST(%(item)s AS bigint))",
            {"order": order_id, "item": item_id}, _scalar)


def _q_extend(order_id, ttl):
    return ("SELECT harbor.extend_reservation(CAST(%(order)s AS text), CAST(%(ttl)s AS interval))",
            {"order": order_id, "ttl": _ttl(ttl)}, _scalar)


def _status(c, r):
    return StockStatus(**dict(zip(c, r[0])))


def _q_stock_status(item_id, model=None):
    return ("SELECT on_hand, reserved, confirmed, available FROM harbor.stock_status("
            "CAST(%(item)s AS bigint), CAST(%(model)s AS text))",
            {"item": item_id, "model": model}, _status)


def _q_sweep_expired(batch_size=1000):
    return ("SELECT harbor.sweep_expired(CAST(%(n)s AS integer))", {"n": batch_size}, _scalar)


def _run(conn, q):
    sql, params, convert = q
    cols, rows = _conn.execute(conn, sql, params)
    return convert(cols, rows)


def reserve_stock(conn, item_id, qty, order_id, ttl=DEFAULT_TTL, model=None):
    """Hold ``qty`` of ``item_id`` for ``order_id`` (idempotent per order and item)."""
    return _run(conn, _q_reserve_stock(item_id, qty, order_id, ttl, model))


def reserve_many(conn, order_id, items, ttl=DEFAULT_TTL, model=None):
    """All lines or none; ``items`` is ``{item_id: qty}`` or ``(item_id, qty)`` pairs."""
    return _run(conn, _q_reserve_many(order_id, items, ttl, model))


def confirm(conn, order_id):
    """Confirm the order's active holds; returns how many."""
    return _run(conn, _q_confirm(order_id))


def release(conn, order_id, item_id=None):
    """Release the order's active holds (or its hold on one item); returns how many."""
    return _run(conn, _q_release(order_id, item_id))


def extend(conn, order_id, ttl):
    """Renew the order's active holds to expire ``ttl`` from now; returns how many."""
    return _run(conn, _q_extend(order_id, ttl))


def stock_status(conn, item_id, model=None):
    """A :class:`StockStatus` for the item."""
    return _run(conn, _q_stock_status(item_id, model))


def sweep_expired(conn, batch_size=1000):
    """Close expired holds and restore their stock; returns how many were released."""
    return _run(conn, _q_sweep_expired(batch_size))


# ---------------------------------------------------------------------------
# Retrying serialization failures and deadlocks

def backoff_delays(attempts, base_delay, max_delay):
    for i in range(attempts - 1):
        yield random.uniform(0, min(max_delay, base_delay * (2 ** i)))


class _Txn:
    """Begin/commit/rollback of a transaction the retry helper owns."""

    def __init__(self, conn):
        self.conn = conn
        self.kind = _conn.kind_of(conn)

    def __enter__(self):
        k, c = self.kind, self.conn
        if k == "psycopg":
            self.cm = c.transaction()
            self.cm.__enter__()
        elif k == "psycopg2":
            if c.autocommit:
                with c.cursor() as cur:
                    cur.execute("BEGIN")
        else:
            self.cm = c.begin()
            self.cm.__enter__()
        return self

    def __exit__(self, et, ev, tb):
        k, c = self.kind, self.conn
        if k == "psycopg" or k == "sqlalchemy":
            return self.cm.__exit__(et, ev, tb)
        if et is None:
            if c.autocommit:
                with c.cursor() as cur:
                    cur.execute("COMMIT")
            else:
                c.commit()
        else:
            if c.autocommit:
                with c.cursor() as cur:
                    cur.execute("ROLLBACK")
            else:
                c.rollback()
        return False


def retry_transaction(conn, fn, *args, attempts=5, base_delay=0.01, max_delay=0.5, **kwargs):
    """Run ``fn(conn, *args, **kwargs)`` in a transaction of its own, committed at
    the end, and retried on 40001/40P01 with jittered exponential backoff.

    Refuses (``TransactionInProgress``) when ``conn`` is already inside a
    transaction: retrying only the last statement of someone else's
    transaction would be wrong, and rolling it back is not ours to do.
    """
    if _conn.in_transaction(conn):
        raise TransactionInProgress(
            "retry_transaction needs a connection outside any transaction; "
            "commit or roll back first, or retry the whole transaction yourself")
    delays = backoff_delays(attempts, base_delay, max_delay)
    while True:
        try:
            with _Txn(conn):
                return fn(conn, *args, **kwargs)
        except Exception as e:
            if sqlstate_of(e) not in RETRYABLE:
                raise
            d = next(delays, None)
            if d is None:
                raise
            time.sleep(d)
