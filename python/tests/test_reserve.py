"""Reservation calls over psycopg 3, psycopg2, SQLAlchemy Connection and Session:
results, the caller's transaction left alone, every error class, the retry
helper, and the seed's 20-checkout race for 5 mugs."""
import dataclasses
import threading
from datetime import datetime, timedelta

import psycopg
import psycopg2
import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

import harbor_orm as ho
from harbor_orm import _conn

ITEM = 20          # variants 20 and 21 have 100 in stock
ITEM2 = 21
MUG = 10000        # 5 in stock


def q(c, sql):
    return _conn.execute(c, sql, {})[1][0][0]


def test_calls_on_every_connection_kind(anyconn):
    c = anyconn
    before = ho.stock_status(c, ITEM)
    assert isinstance(before, ho.StockStatus)
    r = ho.reserve_stock(c, ITEM, 2, "o-calls", ttl=timedelta(minutes=5))
    assert isinstance(r, ho.Reservation)
    assert (r.model, r.item_id, r.order_id, r.qty, r.status) == ("variants", ITEM, "o-calls", 2, "active")
    assert isinstance(r.expires_at, datetime) and r.closed_at is None
    assert timedelta(minutes=4) < r.expires_at - r.created_at <= timedelta(minutes=5, seconds=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.qty = 3
    # idempotent resize: same hold
    r2 = ho.reserve_stock(c, ITEM, 3, "o-calls", ttl=60, model="variants")
    assert r2.id == r.id and r2.qty == 3
    st = ho.stock_status(c, ITEM)
    assert st.available == before.available - 3 and st.reserved == before.reserved + 3
    lines = ho.reserve_many(c, "o-many", {ITEM: 1, ITEM2: 2})
    assert sorted((x.item_id, x.qty) for x in lines) == [(ITEM, 1), (ITEM2, 2)]
    lines = ho.reserve_many(c, "o-many2", [(ITEM, 1), (ITEM2, 1)], ttl=timedelta(seconds=30))
    assert len(lines) == 2
    assert ho.extend(c, "o-many", timedelta(minutes=30)) == 2
    assert ho.confirm(c, "o-calls") == 1
    assert ho.release(c, "o-many", ITEM2) == 1
    assert ho.release(c, "o-many") == 1
    assert ho.release(c, "o-many") == 0
    assert ho.sweep_expired(c, 100) >= 0
    # nothing was committed: the caller's transaction is still open
    assert _conn.in_transaction(c)
    c.rollback()
    assert ho.stock_status(c, ITEM) == before


def test_insufficient_stock_numbers(anyconn):
    with pytest.raises(ho.InsufficientStock) as ei:
        ho.reserve_stock(anyconn, MUG, 7, "o-too-many")
    e = ei.value
    assert (e.sqlstate, e.item_id, e.requested, e.available) == ("HB001", MUG, 7, 5)
    assert e.message == 'insufficient stock for item %d of model "variants"' % MUG
    assert e.detail == "Item %d: requested 7, available 5." % MUG
    assert isinstance(e, ho.HarborError)
    assert e.__cause__ is not None


def test_reserve_many_lists_every_short_line(anyconn):
    with pytest.raises(ho.InsufficientStock) as ei:
        ho.reserve_many(anyconn, "o-short", {MUG: 6, ITEM: 500, ITEM2: 1})
    e = ei.value
    assert sorted(e.lines) == sorted([(MUG, 6, 5), (ITEM, 500, 100)])
    assert (e.item_id, e.requested, e.available) == e.lines[0]
    assert e.hint == "Nothing was reserved."


@pytest.mark.parametrize("call, cls, state", [
    (lambda c: ho.reserve_stock(c, 999999, 1, "o-x"), ho.UnknownItem, "HB002"),
    (lambda c: ho.confirm(c, "o-never-reserved"), ho.ReservationNotHeld, "HB003"),
    (lambda c: ho.reserve_stock(c, ITEM, 0, "o-x"), ho.InvalidArgument, "22023"),
    (lambda c: ho.reserve_stock(c, ITEM, 1, None), ho.InvalidArgument, "22004"),
    (lambda c: ho.reserve_many(c, "o-x", []), ho.InvalidArgument, "22023"),
    (lambda c: ho.sweep_expired(c, 0), ho.InvalidArgument, "22023"),
    (lambda c: ho.reserve_stock(c, ITEM, 1, "o-x", model="brands"), ho.HarborError, "55000"),
])
def test_error_classes(anyconn, call, cls, state):
    with pytest.raises(cls) as ei:
        call(anyconn)
    assert type(ei.value) is cls
    assert ei.value.sqlstate == state and ei.value.message


def test_translate_driver_and_sqlalchemy_exceptions(pg3, pg2, sa_conn):
    sql = "SELECT * FROM harbor.reserve_stock(10000, 50, 'o-t')"
    raised = []
    try:
        pg3.execute(sql)
    except psycopg.Error as e:
        raised.append(e)
    with pg2.cursor() as cur:
        try:
            cur.execute(sql)
        except psycopg2.Error as e:
            raised.append(e)
    try:
        sa_conn.execute(text(sql))
    except sqlalchemy.exc.DBAPIError as e:
        raised.append(e)
    assert len(raised) == 3
    errs = [ho.translate(e) for e in raised]
    assert all(type(x) is ho.InsufficientStock for x in errs)
    assert {(x.item_id, x.requested, x.available, x.detail) for x in errs} == \
        {(MUG, 50, 5, "Item 10000: requested 50, available 5.")}
    assert ho.translate(ValueError("x")) is None


def test_session_error_leaves_rollback_to_caller(sa_session):
    with pytest.raises(ho.InsufficientStock):
        ho.reserve_stock(sa_session, MUG, 99, "o-s")
    assert sa_session.in_transaction()          # harbor did not end it
    with pytest.raises(sqlalchemy.exc.InternalError):
        sa_session.execute(text("SELECT 1"))    # aborted, as after any error
    sa_session.rollback()
    assert sa_session.execute(text("SELECT 1")).scalar() == 1


def _fail_first(n_fail, state):
    calls = []

    def fn(c):
        calls.append(1)
        if len(calls) <= n_fail:
            # a real server error with that SQLSTATE
            _conn.execute(c, "SELECT harbor_py_raise(%(s)s)", {"s": state})
        return ho.reserve_stock(c, ITEM, 1, "o-retry-%s" % state)
    return fn, calls


@pytest.fixture(scope="module")
def raiser(database):
    with psycopg.connect(dbname=database, autocommit=True) as c:
        c.execute("""CREATE OR REPLACE FUNCTION harbor_py_raise(s text) RETURNS boolean
                     LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'simulated conflict'
                     USING ERRCODE = s; END$$""")


@pytest.mark.parametrize("state", ["40001", "40P01"])
def test_retry_transaction_retries_and_commits(anyconn, raiser, state):
    fn, calls = _fail_first(2, state)
    r = ho.retry_transaction(anyconn, fn, base_delay=0.001)
    assert len(calls) == 3 and r.qty == 1
    assert not _conn.in_transaction(anyconn)
    # committed by the helper: visible elsewhere; clean up
    assert ho.release(anyconn, r.order_id) == 1
    anyconn.commit()


def test_retry_gives_up_and_does_not_retry_other_errors(anyconn, raiser):
    fn, calls = _fail_first(10, "40001")
    with pytest.raises(ho.Conflict):
        ho.retry_transaction(anyconn, fn, attempts=3, base_delay=0.001)
    assert len(calls) == 3
    calls2 = []

    def short(c):
        calls2.append(1)
        return ho.reserve_stock(c, MUG, 99, "o-short")
    with pytest.raises(ho.InsufficientStock):
        ho.retry_transaction(anyconn, short, base_delay=0.001)
    assert len(calls2) == 1
    assert not _conn.in_transaction(anyconn)


def test_retry_refuses_inside_callers_transaction(anyconn):
    q(anyconn, "SELECT 1")
    assert _conn.in_transaction(anyconn)
    with pytest.raises(ho.TransactionInProgress):
        ho.retry_transaction(anyconn, lambda c: None)
    assert _conn.in_transaction(anyconn)


def test_unsupported_connection():
    with pytest.raises(TypeError):
        ho.reserve_stock(object(), 1, 1, "o")


def test_race_for_five_mugs(Sess, engine):
    """The seed's reserve flow with the package: 20 checkouts, own Session each."""
    from models import Variant
    n = 20
    barrier = threading.Barrier(n)
    ok, short, other = [], [], []

    def checkout(i):
        with Sess() as session:
            barrier.wait()
            try:
                r = ho.reserve_stock(session, MUG, 1, "race-%d" % i)
                session.commit()
                ok.append(r)
            except ho.InsufficientStock as e:
                session.rollback()
                short.append(e)
            except Exception as e:          # pragma: no cover - reported below
                other.append(e)
    threads = [threading.Thread(target=checkout, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert other == []
    assert len(ok) == 5 and len(short) == 15
    assert len({r.order_id for r in ok}) == 5 and all(r.qty == 1 for r in ok)
    for e in short:
        assert (e.sqlstate, e.item_id, e.requested, e.available) == ("HB001", MUG, 1, 0)
    with Sess() as s:
        assert s.execute(select(Variant.stock_qty).where(Variant.id == MUG)).scalar_one() == 0
        st = ho.stock_status(s, MUG)
        assert (st.available, st.reserved, st.on_hand) == (0, 5, 5)
        # put the mugs back for other tests
        for r in ok:
            assert ho.release(s, r.order_id) == 1
        s.commit()
        assert ho.stock_status(s, MUG).available == 5
