"""Fixtures: a fresh database with harbor_orm and the Harbor Commerce models in
the cluster the environment points at (PGHOST, PGPORT, PGUSER... as set by
pg_virtualenv in test/suites/python.sh)."""
import os
import sys
from decimal import Decimal

import psycopg
import psycopg2
import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import harbor_orm  # noqa: E402
from harbor_orm.sqlalchemy import register_models  # noqa: E402
from models import Base, Brand, Category, Product, Tag, Variant, product_links  # noqa: E402

DB = os.environ.get("HARBOR_PY_TEST_DB", "harbor_py_test")
MUG_STOCK = 5


def seed(session):
    brands = [Brand(id=i, name="brand %d" % i) for i in range(1, 4)]
    root = Category(id=1, name="all")
    kitchen = Category(id=2, name="kitchen", parent=root)
    cats = [root, kitchen, Category(id=3, name="mugs", parent=kitchen),
            Category(id=4, name="apparel", parent=root)]
    tags = [Tag(id=i, name="tag %d" % i) for i in range(1, 9)]
    session.add_all(brands + cats + tags)
    products = []
    for i in range(1, 61):
        p = Product(id=i, sku="HBR-%03d" % i, name="product %d" % i, price_cents=500 + i,
                    price=Decimal("%d.%02d" % (5 + i, i % 100)),
                    attrs={"color": ["red", "blue"][i % 2], "weight": i * 0.5, "n": i},
                    brand=brands[i % 3] if i % 7 else None, category=cats[i % 4],
                    tags=[tags[i % 8], tags[(i + 3) % 8], tags[(i + 5) % 8]] if i % 5 else [])
        for s, size in enumerate(["S", "M", "L", "XL"][: 1 + i % 4]):
            p.variants.append(Variant(id=i * 10 + s, size=size, stock_qty=100))
        products.append(p)
    session.add_all(products)
    session.flush()
    for i in range(1, 61, 3):
        session.execute(product_links.insert().values(product_id=i, related_id=(i % 60) + 1))
        session.execute(product_links.insert().values(product_id=i, related_id=((i + 10) % 60) + 1))
    # the limited-edition mug
    mug = Product(id=1000, sku="HBR-MUG-01", name="limited mug", price_cents=2500,
                  price=Decimal("25.00"), brand=brands[0], category=cats[2])
    mug.variants.append(Variant(id=10000, size="one", stock_qty=MUG_STOCK))
    session.add(mug)


@pytest.fixture(scope="session")
def database():
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute('DROP DATABASE IF EXISTS "%s"' % DB)
        c.execute('CREATE DATABASE "%s"' % DB)
    with psycopg.connect(dbname=DB, autocommit=True) as c:
        c.execute("CREATE EXTENSION harbor_orm")
    engine = create_engine("postgresql+psycopg2:///" + DB, future=True)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        register_models(s, Base)
        s.execute(harbor_orm._conn.sa_text("SELECT harbor.enable_stock('variants', 'stock_qty')"), {})
        seed(s)
        s.commit()
    engine.dispose()
    yield DB


@pytest.fixture(scope="session")
def engine(database):
    e = create_engine("postgresql+psycopg2:///" + database, future=True, pool_size=25,
                      max_overflow=5)
    yield e
    e.dispose()


@pytest.fixture
def Sess(engine):
    return sessionmaker(bind=engine, future=True)


@pytest.fixture
def pg3(database):
    c = psycopg.connect(dbname=database)
    yield c
    c.close()


@pytest.fixture
def pg2(database):
    c = psycopg2.connect(dbname=database)
    yield c
    c.close()


@pytest.fixture
def sa_conn(engine):
    with engine.connect() as c:
        yield c


@pytest.fixture
def sa_session(Sess):
    with Sess() as s:
        yield s


@pytest.fixture(params=["psycopg", "psycopg2", "sa_connection", "sa_session"])
def anyconn(request):
    """Each kind of connection the calls accept (rolled back afterwards)."""
    name = {"psycopg": "pg3", "psycopg2": "pg2", "sa_connection": "sa_conn",
            "sa_session": "sa_session"}[request.param]
    c = request.getfixturevalue(name)
    yield c
    c.rollback()


class StatementCounter:
    def __init__(self, engine):
        self.engine = engine
        self.statements = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *a):
        event.remove(self.engine, "before_cursor_execute", self)


@pytest.fixture
def count_sql(engine):
    return lambda: StatementCounter(engine)
