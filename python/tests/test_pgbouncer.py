"""Through a real PgBouncer in transaction pooling mode: psycopg 3 with
prepare_threshold=None (as the seed's checklist says) and SQLAlchemy on
psycopg2, several clients sharing two server connections."""
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import harbor_orm as ho
from harbor_orm import sqlalchemy as hsa
from models import Product

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture(scope="module")
def pooled(database):
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = tempfile.mkdtemp()
    os.chmod(d, 0o755)
    user = os.environ.get("PGUSER", "postgres")
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write("""[databases]
harbor_pool = host=127.0.0.1 port=%s dbname=%s user=%s password=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
""" % (os.environ.get("PGPORT", "5432"), database, user, os.environ.get("PGPASSWORD", ""),
       port, d, d, d))
    with open(os.path.join(d, "userlist.txt"), "w") as f:
        f.write('"%s" ""\n' % user)
    for n in os.listdir(d):
        os.chmod(os.path.join(d, n), 0o644)
    cmd = [PGBOUNCER, "-d", os.path.join(d, "pgbouncer.ini")]
    if os.getuid() == 0:
        shutil.chown(d, "postgres")
        for n in os.listdir(d):
            shutil.chown(os.path.join(d, n), "postgres")
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True)
    dsn = "host=127.0.0.1 port=%d dbname=harbor_pool user=%s" % (port, user)
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield dsn
    try:
        with open(os.path.join(d, "pgbouncer.pid")) as f:
            os.kill(int(f.read().strip()), 15)
    except (OSError, ValueError):
        pass
    shutil.rmtree(d, ignore_errors=True)


def test_psycopg_through_transaction_pooling(pooled):
    failures = []

    def client(n):
        try:
            with psycopg.connect(pooled, prepare_threshold=None) as c:
                for i in range(12):             # past psycopg's default threshold of 5
                    r = ho.reserve_stock(c, 20 + n % 2, 1, "pool-%d-%d" % (n, i))
                    c.commit()
                    assert ho.release(c, r.order_id) == 1
                    c.commit()
                with pytest.raises(ho.InsufficientStock) as ei:
                    ho.reserve_stock(c, 10000, 99, "pool-short-%d" % n)
                assert (ei.value.requested, ei.value.available) == (99, 5)
                c.rollback()
                r = ho.retry_transaction(c, lambda cc: ho.reserve_stock(cc, 20, 1, "pool-rt-%d" % n))
                assert ho.release(c, r.order_id) == 1
                c.commit()
        except Exception as e:
            failures.append(e)
    ts = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert failures == []


def test_sqlalchemy_load_through_transaction_pooling(pooled):
    import psycopg2
    engine = create_engine("postgresql+psycopg2://", future=True,
                           creator=lambda: psycopg2.connect(pooled))
    try:
        for _ in range(8):
            with Session(engine) as s:
                got = hsa.load(s, Product, [3, 2, 1], include=["variants", "tags"])
                assert [p.id for p in got] == [3, 2, 1] and got[2].variants
                r = ho.reserve_stock(s, 21, 1, "pool-sa")
                s.commit()
                assert ho.release(s, r.order_id) == 1
                s.commit()
    finally:
        engine.dispose()
