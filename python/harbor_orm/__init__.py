"""harbor_orm: Python calls for the harbor_orm PostgreSQL extension.

Stock reservations (``reserve_stock``, ``reserve_many``, ``confirm``,
``release``, ``extend``, ``stock_status``, ``sweep_expired``) over a psycopg 3
or psycopg2 connection or a SQLAlchemy ``Connection``/``Session``; errors as
:class:`HarborError` subclasses; ``retry_transaction`` for 40001/40P01;
``listen`` for change notifications.  Object loading into a SQLAlchemy
Session is in :mod:`harbor_orm.sqlalchemy`, async twins in :mod:`harbor_orm.aio`.
"""
from .core import (Reservation, StockStatus, reserve_stock, reserve_many, confirm,
                   release, extend, stock_status, sweep_expired, retry_transaction)
from .errors import (HarborError, InsufficientStock, UnknownItem, ReservationNotHeld,
                     InvalidArgument, Conflict, TransactionInProgress, translate)
from .notify import Change, listen, parse_change

__version__ = "0.2.0"

__all__ = [
    "Reservation", "StockStatus", "reserve_stock", "reserve_many", "confirm", "release",
    "extend", "stock_status", "sweep_expired", "retry_transaction",
    "HarborError", "InsufficientStock", "UnknownItem", "ReservationNotHeld",
    "InvalidArgument", "Conflict", "TransactionInProgress", "translate",
    "Change", "listen", "parse_change",
]
