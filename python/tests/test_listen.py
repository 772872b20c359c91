"""Change notifications through harbor_orm.listen and harbor_orm.aio.listen,
with the payload modes of harbor.enable_change_notify (count, keys, none) and a
per-model channel, and a cache that drops keys on commit."""
import asyncio
import threading

import psycopg
import psycopg2
import pytest

import harbor_orm as ho
from harbor_orm import aio


@pytest.fixture(scope="module")
def notifying(database):
    with psycopg.connect(dbname=database, autocommit=True) as c:
        c.execute("SELECT harbor.enable_change_notify('variants', payload => 'keys')")
        c.execute("SELECT harbor.enable_change_notify('brands', channel => 'brand_changes', "
                  "payload => 'count')")
    yield
    with psycopg.connect(dbname=database, autocommit=True) as c:
        c.execute("SELECT harbor.disable_change_notify('variants')")
        c.execute("SELECT harbor.disable_change_notify('brands')")


def wait_listening(database, pid, channel, deadline=10.0):
    """Until backend pid has run LISTEN channel (polling with a deadline)."""
    with psycopg.connect(dbname=database, autocommit=True) as c:
        for _ in range(int(deadline / 0.01)):
            if c.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'"
                         " AND query = %s", (pid, 'LISTEN "%s"' % channel)).fetchone():
                return
            threading.Event().wait(0.01)
    raise AssertionError("listener did not start within %ss" % deadline)


def writer(database, statements):
    with psycopg.connect(dbname=database) as c:
        for s in statements:
            c.execute(s)
        c.commit()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_listen_drops_cache_keys(database, notifying, driver):
    cache = {("variants", 20): "cached", ("variants", 21): "cached", ("variants", 30): "cached",
             ("brands", 1): "cached"}

    def drop(change):
        if change.whole_model:
            for k in [k for k in cache if k[0] == change.model]:
                del cache[k]
        else:
            for i in change.ids:
                cache.pop((change.model, i), None)

    if driver == "psycopg":
        lc = psycopg.connect(dbname=database, autocommit=True)
    else:
        lc = psycopg2.connect(dbname=database)
        lc.autocommit = True
    try:
        got = []
        t = threading.Thread(target=lambda: got.append(ho.listen(
            lc, lambda ch: (got.append(ch), drop(ch)), channels=["harbor_changes", "brand_changes"],
            timeout=10, max_events=2)))
        t.start()
        pid = lc.info.backend_pid if driver == "psycopg" else lc.get_backend_pid()
        wait_listening(database, pid, "brand_changes")
        with psycopg.connect(dbname=database) as c:     # rolled back: nothing sent
            c.execute("UPDATE variants SET stock_qty = stock_qty WHERE id = 30")
            c.rollback()
        writer(database, ["UPDATE variants SET stock_qty = stock_qty WHERE id IN (20, 21)",
                          "UPDATE brands SET name = name WHERE id = 2"])
        t.join(15)
        changes = [g for g in got if isinstance(g, ho.Change)]
        assert got[-1] == 2
        by_model = {c.model: c for c in changes}
        assert sorted(by_model["variants"].ids) == [20, 21] and by_model["variants"].op == "update"
        assert by_model["brands"].channel == "brand_changes" and by_model["brands"].count == 1
        assert by_model["brands"].whole_model
        assert cache == {("variants", 30): "cached"}
    finally:
        lc.close()


def test_listen_on_a_sqlalchemy_connection(database, notifying, engine, sa_session):
    got = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        t = threading.Thread(target=lambda: got.append(
            ho.listen(c, got.append, timeout=10, max_events=1)))
        t.start()
        wait_listening(database, c.connection.dbapi_connection.get_backend_pid(), "harbor_changes")
        writer(database, ["UPDATE variants SET stock_qty = stock_qty WHERE id = 31"])
        t.join(15)
    assert got[-1] == 1 and (got[0].model, got[0].ids) == ("variants", [31])
    with pytest.raises(TypeError):
        ho.listen(sa_session, print, timeout=0)


def test_listen_timeout_returns(database, notifying):
    with psycopg.connect(dbname=database, autocommit=True) as lc:
        assert ho.listen(lc, lambda ch: None, timeout=0.2) == 0
    with psycopg.connect(dbname=database) as lc:
        with pytest.raises(ValueError):
            ho.listen(lc, lambda ch: None, timeout=0.1)


def test_async_listen(database, notifying):
    async def main():
        async with await psycopg.AsyncConnection.connect(dbname=database, autocommit=True) as lc:
            it = aio.listen(lc)
            first = asyncio.ensure_future(it.__anext__())
            pid = lc.info.backend_pid
            await asyncio.get_running_loop().run_in_executor(
                None, wait_listening, database, pid, "harbor_changes")
            async with await psycopg.AsyncConnection.connect(dbname=database) as c:
                await c.execute("UPDATE variants SET stock_qty = stock_qty WHERE id = 22")
                await c.commit()
            ch = await asyncio.wait_for(first, 10)
            assert (ch.model, ch.op, ch.ids) == ("variants", "update", [22])
            await it.aclose()
    asyncio.run(main())
