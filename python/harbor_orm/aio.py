"""Async twins of the harbor_orm calls.

``conn`` is a psycopg 3 ``AsyncConnection`` or a SQLAlchemy ``AsyncSession`` /
``AsyncConnection`` (these need an async driver such as asyncpg, or psycopg
under SQLAlchemy 2.x).  Same statements, same errors, same rule: nothing here
commits or rolls back for the caller, except ``retry_transaction``, which owns
the transaction it starts.
"""
import asyncio
import sys

from . import core
from ._conn import sa_text
from .core import DEFAULT_TTL, backoff_delays
from .errors import RETRYABLE, TransactionInProgress, sqlstate_of, translate
from .notify import DEFAULT_CHANNEL, _quote_ident, parse_change

__all__ = ["reserve_stock", "reserve_many", "confirm", "release", "extend", "stock_status",
           "sweep_expired", "retry_transaction", "listen", "load", "get", "find"]


def _kind(conn):
    m = sys.modules.get("psycopg")
    if m is not None and isinstance(conn, m.AsyncConnection):
        return "psycopg"
    m = sys.modules.get("sqlalchemy.ext.asyncio")
    if m is not None and isinstance(conn, (m.AsyncSession, m.AsyncConnection)):
        return "sqlalchemy"
    raise TypeError("harbor_orm.aio: unsupported connection type %s.%s (expected a psycopg "
                    "AsyncConnection or a SQLAlchemy AsyncSession/AsyncConnection)"
                    % (type(conn).__module__, type(conn).__name__))


async def execute(conn, sql, params):
    kind = _kind(conn)
    try:
        if kind == "psycopg":
            cur = await conn.execute(sql, params)
            cols = [d.name for d in cur.description]
            return cols, await cur.fetchall()
        res = await conn.execute(sa_text(sql), params)
        return list(res.keys()), [tuple(r) for r in res]
    except Exception as e:
        err = translate(e)
        if err is None:
            raise
        raise err from e


async def _run(conn, q):
    sql, params, convert = q
    cols, rows = await execute(conn, sql, params)
    return convert(cols, rows)


async def reserve_stock(conn, item_id, qty, order_id, ttl=DEFAULT_TTL, model=None):
    return await _run(conn, core._q_reserve_stock(item_id, qty, order_id, ttl, model))


async def reserve_many(conn, order_id, items, ttl=DEFAULT_TTL, model=None):
    return await _run(conn, core._q_reserve_many(order_id, items, ttl, model))


async def confirm(conn, order_id):
    return await _run(conn, core._q_confirm(order_id))


async def release(conn, order_id, item_id=None):
    return await _run(conn, core._q_release(order_id, item_id))


async def extend(conn, order_id, ttl):
    return await _run(conn, core._q_extend(order_id, ttl))


async def stock_status(conn, item_id, model=None):
    return await _run(conn, core._q_stock_status(item_id, model))


async def sweep_expired(conn, batch_size=1000):
    return await _run(conn, core._q_sweep_expired(batch_size))


def _in_transaction(conn):
    if _kind(conn) == "psycopg":
        from psycopg import pq
        return conn.info.transaction_status != pq.TransactionStatus.IDLE
    return conn.in_transaction()


async def retry_transaction(conn, fn, *args, attempts=5, base_delay=0.01, max_delay=0.5, **kwargs):
    """``await fn(conn, ...)`` in a transaction of its own, retried on 40001/40P01;
    refuses inside a transaction it did not start."""
    if _in_transaction(conn):
        raise TransactionInProgress(
            "retry_transaction needs a connection outside any transaction")
    delays = backoff_delays(attempts, base_delay, max_delay)
    while True:
        try:
            if _kind(conn) == "psycopg":
                async with conn.transaction():
                    return await fn(conn, *args, **kwargs)
            else:
                async with conn.begin():
                    return await fn(conn, *args, **kwargs)
        except Exception as e:
            if sqlstate_of(e) not in RETRYABLE:
                raise
            d = next(delays, None)
            if d is None:
                raise
            await asyncio.sleep(d)


async def listen(conn, channels=(DEFAULT_CHANNEL,)):
    """An async iterator of :class:`harbor_orm.Change` over a psycopg
    ``AsyncConnection`` in autocommit mode::

        async for change in harbor_orm.aio.listen(aconn):
            cache.drop(change.model, change.ids)
    """
    if isinstance(channels, str):
        channels = (channels,)
    if _kind(conn) != "psycopg":
        raise TypeError("listen needs a psycopg AsyncConnection")
    if not conn.autocommit:
        raise ValueError("listen needs a connection in autocommit mode")
    for ch in channels:
        await conn.execute("LISTEN " + _quote_ident(ch))
    async for n in conn.notifies():
        yield parse_change(n.channel, n.payload, n.pid)


# SQLAlchemy AsyncSession: run the sync loader on the session's greenlet.

async def load(session, cls, ids, include=()):
    from . import sqlalchemy as hsa
    return await session.run_sync(lambda s: hsa.load(s, cls, ids, include))


async def get(session, cls, id, include=()):
    from . import sqlalchemy as hsa
    return await session.run_sync(lambda s: hsa.get(s, cls, id, include))


async def find(session, cls, filter=None, include=(), order_by=None, limit=None, offset=0):
    from . import sqlalchemy as hsa
    return await session.run_sync(
        lambda s: hsa.find(s, cls, filter, include, order_by, limit, offset))
