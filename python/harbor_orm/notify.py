"""Change notifications: ``LISTEN`` on the channels ``harbor.enable_change_notify``
sends to, and hand each parsed change to a callback.

A payload is ``{"model", "op"}`` plus ``"count"`` (payload mode ``count``,
the default) or ``"ids"`` (mode ``keys``); neither in mode ``none``.  When
``ids`` is None the whole model is to be treated as changed.
"""
import json
import select
import time
from dataclasses import dataclass
from typing import Any, Optional

from . import _conn

__all__ = ["Change", "parse_change", "listen", "DEFAULT_CHANNEL"]

DEFAULT_CHANNEL = "harbor_changes"


@dataclass(frozen=True)
class Change:
    channel: str
    model: Optional[str]
    op: Optional[str]
    count: Optional[int]
    ids: Optional[list]
    pid: int
    payload: Any

    @property
    def whole_model(self):
        """True when the payload does not say which rows changed."""
        return self.ids is None


def parse_change(channel, payload, pid=0):
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return Change(channel=channel, model=data.get("model"), op=data.get("op"),
                  count=data.get("count"), ids=data.get("ids"), pid=pid, payload=data or payload)


def _quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def _raw(conn):
    """The driver connection under a SQLAlchemy Connection."""
    kind = _conn.kind_of(conn)
    if kind != "sqlalchemy":
        return conn, kind
    orm = __import__("sys").modules.get("sqlalchemy.orm")
    if orm is not None and isinstance(conn, orm.Session):
        raise TypeError("listen needs a connection of its own, not a Session")
    fairy = conn.connection
    raw = getattr(fairy, "dbapi_connection", None) or getattr(fairy, "connection")
    return raw, _conn.kind_of(raw)


def listen(conn, callback, channels=(DEFAULT_CHANNEL,), timeout=None, max_events=None):
    """Listen on ``channels`` and call ``callback(change)`` for each notification.

    ``conn`` must be in autocommit mode (notifications are only delivered
    between transactions); it should be a connection kept for listening.
    Returns the number of changes handled when ``timeout`` seconds pass with
    nothing received, when ``max_events`` were handled, or when the callback
    returns ``False``.
    """
    if isinstance(channels, str):
        channels = (channels,)
    raw, kind = _raw(conn)
    if kind == "psycopg":
        if not raw.autocommit:
            raise ValueError("listen needs a connection in autocommit mode")
        for ch in channels:
            raw.execute("LISTEN " + _quote_ident(ch))
        pgconn = raw.pgconn

        def poll():
            pgconn.consume_input()
            out = []
            while True:
                n = pgconn.notifies()
                if n is None:
                    return out
                out.append(parse_change(n.relname.decode(), n.extra.decode(), n.be_pid))
        fileno = pgconn.socket
    else:
        import psycopg2.extensions as ext
        if raw.isolation_level != ext.ISOLATION_LEVEL_AUTOCOMMIT and not raw.autocommit:
            raise ValueError("listen needs a connection in autocommit mode")
        with raw.cursor() as cur:
            for ch in channels:
                cur.execute("LISTEN " + _quote_ident(ch))

        def poll():
            raw.poll()
            out = [parse_change(n.channel, n.payload, n.pid) for n in raw.notifies]
            del raw.notifies[:]
            return out
        fileno = raw.fileno()

    handled = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = poll()
    while True:
        for ch in pending:
            handled += 1
            if callback(ch) is False or (max_events is not None and handled >= max_events):
                return handled
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return handled
        r, _, _ = select.select([fileno], [], [], wait)
        pending = poll() if r else []
        if r and pending and deadline is not None:
            deadline = time.monotonic() + timeout
