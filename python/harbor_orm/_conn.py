"""Running one statement on whatever connection the caller has.

Supported: psycopg 3 ``Connection``, psycopg2 ``connection``, SQLAlchemy
``Connection`` and ``Session``; the async twins live in ``harbor_orm.aio``.
Statements are written with ``%(name)s`` placeholders; SQLAlchemy gets them
rewritten to ``:name`` for ``text()``.  Nothing here commits or rolls back.
"""
import re
import sys

from .errors import translate

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_text_cache = {}


def _mod(name):
    return sys.modules.get(name)


def kind_of(conn):
    """'psycopg', 'psycopg2', 'sqlalchemy' (Connection or Session), or raise."""
    m = _mod("psycopg")
    if m is not None and isinstance(conn, m.Connection):
        return "psycopg"
    m = _mod("psycopg2.extensions")
    if m is not None and isinstance(conn, m.connection):
        return "psycopg2"
    m = _mod("sqlalchemy.orm")
    if m is not None and isinstance(conn, m.Session):
        return "sqlalchemy"
    m = _mod("sqlalchemy.engine")
    if m is not None and isinstance(conn, m.Connection):
        return "sqlalchemy"
    raise TypeError("harbor_orm: unsupported connection type %s.%s (expected a psycopg or "
                    "psycopg2 connection, or a SQLAlchemy Connection or Session)"
                    % (type(conn).__module__, type(conn).__name__))


def sa_text(sql):
    t = _text_cache.get(sql)
    if t is None:
        from sqlalchemy import text
        t = text(_PLACEHOLDER.sub(r":\1", sql))
        _text_cache[sql] = t
    return t


def execute(conn, sql, params):
    """Run ``sql`` and return ``(column_names, rows)``; server errors become HarborError."""
    kind = kind_of(conn)
    try:
        if kind == "psycopg":
            cur = conn.execute(sql, params)
            cols = [d.name for d in cur.description]
            return cols, cur.fetchall()
        if kind == "psycopg2":
            with conn.cursor() as cur:
                cur.execute(sql, params)
                cols = [d[0] for d in cur.description]
                return cols, cur.fetchall()
        res = conn.execute(sa_text(sql), params)
        return list(res.keys()), [tuple(r) for r in res]
    except Exception as e:
        err = translate(e)
        if err is None:
            raise
        raise err from e


def in_transaction(conn):
    kind = kind_of(conn)
    if kind == "psycopg":
        from psycopg import pq
        return conn.info.transaction_status != pq.TransactionStatus.IDLE
    if kind == "psycopg2":
        import psycopg2.extensions as ext
        return conn.get_transaction_status() != ext.TRANSACTION_STATUS_IDLE
    return conn.in_transaction()
