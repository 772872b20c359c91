"""Exceptions raised by harbor_orm, whatever driver the error came through.

A server error reaches Python as a psycopg 3 ``psycopg.Error``, a psycopg2
``psycopg2.Error`` or, through SQLAlchemy, a ``sqlalchemy.exc.DBAPIError``
wrapping one of those.  :func:`translate` turns any of them into the same
:class:`HarborError` subclass, chosen by SQLSTATE, with the original exception
as ``__cause__`` (and ``.orig``).
"""
import re

__all__ = [
    "HarborError", "InsufficientStock", "UnknownItem", "ReservationNotHeld",
    "InvalidArgument", "Conflict", "TransactionInProgress", "translate",
    "sqlstate_of",
]


class HarborError(Exception):
    """A database error raised by a harbor_orm call.

    ``sqlstate``, ``message`` (the primary message), ``detail`` and ``hint``
    come from the server; ``orig`` is the driver's exception.
    """

    sqlstates = ()

    def __init__(self, message, sqlstate=None, detail=None, hint=None, orig=None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.orig = orig

    def __str__(self):
        s = self.message or ""
        if self.sqlstate:
            s = "%s: %s" % (self.sqlstate, s)
        if self.detail:
            s += "\nDETAIL: " + self.detail
        if self.hint:
            s += "\nHINT: " + self.hint
        return s


_LINE = re.compile(r"Item (-?\d+): requested (-?\d+), available (-?\d+)\.")


class InsufficientStock(HarborError):
    """HB001: not enough stock.

    ``item_id``, ``requested`` and ``available`` describe the first short
    line; ``lines`` lists every short line as ``(item_id, requested,
    available)`` tuples (``reserve_many`` reports them all).  They are parsed
    from the server's detail text, ``Item 42: requested 3, available 1.``
    """

    sqlstates = ("HB001",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = [tuple(int(g) for g in m.groups())
                      for m in _LINE.finditer(self.detail or "")]
        first = self.lines[0] if self.lines else (None, None, None)
        self.item_id, self.requested, self.available = first


class UnknownItem(HarborError):
    """HB002: the item does not exist or row-level security hides it."""
    sqlstates = ("HB002",)


class ReservationNotHeld(HarborError):
    """HB003: confirming what the order no longer holds."""
    sqlstates = ("HB003",)


class InvalidArgument(HarborError):
    """22023 (invalid parameter value) or 22004 (NULL not allowed)."""
    sqlstates = ("22023", "22004")


class Conflict(HarborError):
    """40001 (serialization failure) or 40P01 (deadlock): retry the transaction."""
    sqlstates = ("40001", "40P01")


class TransactionInProgress(RuntimeError):
    """The retry helper was called inside a transaction it did not start."""


_BY_STATE = {}
for _cls in (InsufficientStock, UnknownItem, ReservationNotHeld, InvalidArgument, Conflict):
    for _s in _cls.sqlstates:
        _BY_STATE[_s] = _cls

RETRYABLE = frozenset(Conflict.sqlstates)


def _unwrap(exc):
    """The driver exception behind ``exc`` (SQLAlchemy wraps it in ``.orig``)."""
    orig = getattr(exc, "orig", None)
    if orig is not None and type(exc).__module__.startswith("sqlalchemy"):
        return orig
    return exc


def sqlstate_of(exc):
    """The SQLSTATE of a psycopg, psycopg2, SQLAlchemy or harbor exception, or None."""
    if isinstance(exc, HarborError):
        return exc.sqlstate
    exc = _unwrap(exc)
    state = getattr(exc, "sqlstate", None)      # psycopg 3
    if state is None:
        state = getattr(exc, "pgcode", None)    # psycopg2
    return state


def translate(exc):
    """The :class:`HarborError` for a driver or SQLAlchemy exception.

    Returns ``exc`` itself if it already is one, and None when the exception
    carries no SQLSTATE (a lost connection, a programming error in Python).
    """
    if isinstance(exc, HarborError):
        return exc
    state = sqlstate_of(exc)
    if not state:
        return None
    orig = _unwrap(exc)
    diag = getattr(orig, "diag", None)
    message = getattr(diag, "message_primary", None) if diag is not None else None
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    hint = getattr(diag, "message_hint", None) if diag is not None else None
    if message is None:
        message = str(orig).strip().split("\n")[0]
    cls = _BY_STATE.get(state, HarborError)
    return cls(message, sqlstate=state, detail=detail, hint=hint, orig=orig)
