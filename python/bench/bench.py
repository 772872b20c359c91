"""Benchmark harbor_orm from Python against the seed's SQLAlchemy patterns.

Run by bench/python.sh inside a throwaway cluster (libpq environment set).
8 threads, each with its own Session, for DURATION seconds per run:
  reserve: the seed's reserve flow (SELECT ... FOR UPDATE via with_for_update,
           decrement, insert its own reservation row, commit) against
           harbor_orm.reserve_stock + commit; on one hot item and on 10,000 items;
  page:    a 50-product page with variants, brand and tags, in a fresh Session:
           selectinload against harbor_orm.sqlalchemy.load.
"""
import os
import random
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.orm import Session, selectinload, sessionmaker  # noqa: E402

import harbor_orm as ho  # noqa: E402
from harbor_orm import sqlalchemy as hsa  # noqa: E402
from models import Base, Brand, Product, StockReservation, Tag, Variant  # noqa: E402

DB = "harbor_bench_py"
THREADS = int(os.environ.get("THREADS", "8"))
DURATION = float(os.environ.get("DURATION", "5"))
NPRODUCTS = 2500


class InsufficientStock(Exception):
    pass


def setup():
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute('DROP DATABASE IF EXISTS "%s"' % DB)
        c.execute('CREATE DATABASE "%s"' % DB)
    with psycopg.connect(dbname=DB, autocommit=True) as c:
        c.execute("CREATE EXTENSION harbor_orm")
    engine = create_engine("postgresql+psycopg2:///" + DB, future=True)
    Base.metadata.create_all(engine)
    with psycopg.connect(dbname=DB) as c:
        c.execute("INSERT INTO brands SELECT g, 'brand ' || g FROM generate_series(1, 8) g")
        c.execute("INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 24) g")
        c.execute("""INSERT INTO products (id, sku, name, price_cents, price, attrs, brand_id)
                     SELECT g, 'SKU-' || g, 'product ' || g, 500 + g, (500 + g) / 100.0,
                            jsonb_build_object('n', g), 1 + g %% 8
                       FROM generate_series(1, %s) g""", (NPRODUCTS,))
        c.execute("""INSERT INTO variants (id, product_id, size, stock_qty)
                     SELECT p * 4 + s, p, (ARRAY['S','M','L','XL'])[s + 1], 1000000000
                       FROM generate_series(1, %s) p, generate_series(0, 3) s""", (NPRODUCTS,))
        c.execute("""INSERT INTO product_tags SELECT p, 1 + (p * 7 + k * 5) %% 24
                       FROM generate_series(1, %s) p, generate_series(0, 2) k
                     ON CONFLICT DO NOTHING""", (NPRODUCTS,))
        c.commit()
    with Session(engine) as s:
        hsa.register_models(s, Base)
        s.execute(text("SELECT harbor.enable_stock('variants', 'stock_qty')"))
        s.commit()
    with psycopg.connect(dbname=DB, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    engine.dispose()


def seed_reserve(session, variant_id, qty, order_id):
    """The seed guide's reserve flow, verbatim in spirit."""
    variant = session.execute(
        select(Variant).where(Variant.id == variant_id).with_for_update()
    ).scalar_one()
    if variant.stock_qty < qty:
        raise InsufficientStock()
    variant.stock_qty -= qty
    session.add(StockReservation(variant_id=variant_id, order_id=order_id, qty=qty,
                                 expires_at=datetime.now(timezone.utc) + timedelta(minutes=15)))
    session.commit()


def harbor_reserve(session, variant_id, qty, order_id):
    ho.reserve_stock(session, variant_id, qty, order_id)
    session.commit()


def seed_page(session, ids):
    rows = session.scalars(select(Product).where(Product.id.in_(ids)).options(
        selectinload(Product.variants), selectinload(Product.brand),
        selectinload(Product.tags))).all()
    by_id = {p.id: p for p in rows}
    return [by_id[i] for i in ids]


def harbor_page(session, ids):
    return hsa.load(session, Product, ids, include=[Product.variants, "brand", Product.tags])


def run(engine, fn, make_args):
    Sess = sessionmaker(bind=engine, future=True)
    counts = [0] * THREADS
    errors = []
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()

    def worker(n):
        rnd = random.Random(n)
        start.wait()
        i = 0
        while not stop.is_set():
            with Sess() as s:
                try:
                    fn(s, *make_args(rnd, n, i))
                except Exception as e:       # counted, reported
                    errors.append(repr(e))
                    s.rollback()
                    continue
            i += 1
            counts[n] += 1
    ts = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(DURATION)
    stop.set()
    for t in ts:
        t.join()
    el = time.perf_counter() - t0
    if errors:
        print("  %d errors, first: %s" % (len(errors), errors[0]))
    return sum(counts) / el


def main():
    setup()
    engine = create_engine("postgresql+psycopg2:///" + DB, future=True, pool_size=THREADS)
    with engine.connect() as c:
        settings = {k: c.execute(text("SHOW " + k)).scalar() for k in
                    ("fsync", "synchronous_commit", "shared_buffers")}
    print("threads %d, %.0f s per run, %s" % (THREADS, DURATION,
          ", ".join("%s=%s" % kv for kv in settings.items())))
    # check both page loaders agree before timing them
    ids = list(range(101, 151))
    with Session(engine) as a, Session(engine) as b:
        pa, pb = seed_page(a, ids), harbor_page(b, ids)
        assert [(p.id, p.name, p.price, [v.id for v in p.variants], p.brand.id,
                 [t.id for t in p.tags]) for p in pa] == \
               [(p.id, p.name, p.price, [v.id for v in p.variants], p.brand.id,
                 [t.id for t in p.tags]) for p in pb]
    results = []
    hot = lambda rnd, n, i: (4, 1, "o-%d-%d" % (n, i))                     # noqa: E731
    spread = lambda rnd, n, i: (rnd.randint(1, NPRODUCTS) * 4 + rnd.randint(0, 3), 1,  # noqa: E731
                                "o-%d-%d" % (n, i))
    page = lambda rnd, n, i: ((lambda o: list(range(o, o + 50)))(rnd.randint(1, NPRODUCTS - 49)),)  # noqa
    for label, args in (("reserve, 1 hot item", hot), ("reserve, 10,000 items", spread)):
        s = run(engine, seed_reserve, args)
        h = run(engine, harbor_reserve, args)
        results.append((label + " (reservations/s)", s, h))
    s = run(engine, seed_page, page)
    h = run(engine, harbor_page, page)
    results.append(("page of 50 products + variants, brand, tags (pages/s)", s, h))
    print()
    print("| workload | seed SQLAlchemy | harbor_orm | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, s, h in results:
        print("| %s | %.0f | %.0f | %.2fx |" % (label, s, h, h / s))
    engine.dispose()
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute('DROP DATABASE IF EXISTS "%s"' % DB)


if __name__ == "__main__":
    main()
