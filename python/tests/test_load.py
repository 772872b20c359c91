"""register_models and load/get/find into the Session: one statement, the same
objects as selectinload, identity map, autoflush and expire_on_commit."""
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import selectinload

import harbor_orm as ho
from harbor_orm import sqlalchemy as hsa
from models import Brand, Category, Product, Tag, Variant

PAGE = list(range(55, 5, -1))       # 50 products, not in key order
INCLUDE = [Product.variants, "brand", Product.tags, "category.parent", "related"]

COLS = {
    Product: ["id", "sku", "name", "price_cents", "price", "created_at", "ext_id", "attrs",
              "brand_id", "category_id"],
    Variant: ["id", "product_id", "size", "stock_qty"],
    Brand: ["id", "name"], Tag: ["id", "name"], Category: ["id", "name", "parent_id"],
}


def same(a, b, rels, path="root"):
    """a and b equal column by column and along the relationships of rels (a tree)."""
    if a is None or b is None:
        assert a is None and b is None, path
        return
    assert type(a) is type(b), path
    for c in COLS[type(a)]:
        va, vb = getattr(a, c), getattr(b, c)
        assert va == vb and type(va) is type(vb), "%s.%s: %r != %r" % (path, c, va, vb)
    for name, sub in rels.items():
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, list):
            assert [x.id for x in va] == [x.id for x in vb], path + "." + name
            for x, y in zip(va, vb):
                same(x, y, sub, path + "." + name)
        else:
            same(va, vb, sub, path + "." + name)


TREE = {"variants": {}, "brand": {}, "tags": {}, "category": {"parent": {}}, "related": {}}


def selectin_page(s, ids):
    rows = s.scalars(select(Product).where(Product.id.in_(ids)).options(
        selectinload(Product.variants), selectinload(Product.brand), selectinload(Product.tags),
        selectinload(Product.category).selectinload(Category.parent),
        selectinload(Product.related))).all()
    by_id = {p.id: p for p in rows}
    return [by_id[i] for i in ids if i in by_id]


def test_registry_follows_the_mappers(sa_session):
    rels = {(m, n): (k, t) for m, n, k, t in sa_session.execute(text(
        "SELECT model, name, kind, target FROM harbor.relationships WHERE explicit"))}
    assert rels[("products", "variants")] == ("one_to_many", "variants")
    assert rels[("products", "tags")] == ("many_to_many", "tags")
    assert rels[("products", "related")] == ("many_to_many", "products")
    assert rels[("categories", "parent")] == ("many_to_one", "categories")
    assert rels[("categories", "children")] == ("one_to_many", "categories")
    assert rels[("tags", "products")] == ("many_to_many", "products")
    assert rels[("stock_reservations", "variant")] == ("many_to_one", "variants")
    # registering again is idempotent
    from models import Base
    assert "products" in hsa.register_models(sa_session, Base)
    sa_session.rollback()


def test_page_is_one_statement_and_equals_selectinload(Sess, count_sql):
    with Sess() as s, count_sql() as n:
        got = hsa.load(s, Product, PAGE, include=INCLUDE)
        assert len(n.statements) == 1 and "harbor.load" in n.statements[0]
        # touching everything included emits no SQL
        for p in got:
            for v in p.variants:
                v.size
            p.brand, p.tags, p.related, p.category and p.category.parent
        assert len(n.statements) == 1
        assert [p.id for p in got] == PAGE
        for p in got:
            st = inspect(p)
            assert st.persistent and not st.modified
        assert not s.new and not s.dirty
    with Sess() as s2:
        want = selectin_page(s2, PAGE)
    assert len(want) == 50
    for a, b in zip(got, want):
        same(a, b, TREE)


def test_python_types(sa_session):
    p = hsa.get(sa_session, Product, 8)
    assert isinstance(p.created_at, datetime) and p.created_at.tzinfo is not None
    assert p.price == Decimal("13.08") and str(p.price) == "13.08"
    assert isinstance(p.ext_id, uuid.UUID)
    assert p.attrs == {"color": "red", "weight": 4.0, "n": 8} and type(p.attrs["weight"]) is float


def test_identity_map_returns_the_same_object(Sess, count_sql):
    with Sess() as s:
        p4 = s.get(Product, 4)
        b = s.get(Brand, 2)
        p4.name = "renamed, not flushed"
        with s.no_autoflush:
            got = hsa.load(s, Product, [4, 10, 4], include=["brand"])
        assert len(got) == 2 and got[0] is p4
        assert p4.name == "renamed, not flushed" and p4 in s.dirty   # pending change kept
        assert got[0].brand is b and got[1].brand is b               # brand 2 shared
        with count_sql() as n:
            assert hsa.get(s, Product, 4) is p4
            assert s.get(Product, 10) is got[1]                       # in the identity map
        # the dirty p4 is autoflushed first, as before any query; then one load
        assert [x.split()[0] for x in n.statements] == ["UPDATE", "SELECT"]
        assert "harbor.load" in n.statements[1]
        s.rollback()


def test_autoflush_like_a_query(Sess):
    with Sess() as s:
        s.add(Product(id=5000, sku="NEW-1", name="fresh", price_cents=1))
        got = hsa.load(s, Product, [5000])          # autoflush: sees the pending row
        assert [p.name for p in got] == ["fresh"]
        assert got[0] is s.get(Product, 5000)
        s.add(Product(id=5001, sku="NEW-2", name="fresh2", price_cents=1))
        with s.no_autoflush:
            assert hsa.load(s, Product, [5001]) == []
        s.rollback()


def test_expire_on_commit(Sess):
    with Sess() as s:
        p = hsa.get(s, Product, 9, include=["variants"])
        s.commit()                                  # expires p
        assert "name" in inspect(p).expired_attributes
        again = hsa.get(s, Product, 9, include=["variants"])
        assert again is p and "name" not in inspect(p).expired_attributes
        assert p.name == "product 9" and [v.id for v in p.variants] == [90, 91]
    with Sess(expire_on_commit=False) as s:
        p = hsa.get(s, Product, 9)
        s.commit()
        assert not inspect(p).expired_attributes and p.name == "product 9"


def test_not_included_relationships_lazy_load(Sess, count_sql):
    with Sess() as s:
        p = hsa.get(s, Product, 10)
        with count_sql() as n:
            assert [v.id for v in p.variants] == [100, 101, 102]
        assert len(n.statements) == 1                       # an ordinary lazy load


def test_self_referential_and_many_to_many(sa_session):
    c3 = hsa.get(sa_session, Category, 3, include=["parent.parent", "children"])
    assert c3.parent.id == 2 and c3.parent.parent.id == 1 and c3.children == []
    root = hsa.get(sa_session, Category, 1, include=[("children", "children")])
    assert [c.id for c in root.children] == [2, 4]
    assert [c.id for c in root.children[0].children] == [3]
    t = hsa.get(sa_session, Tag, 1, include=[Tag.products])
    want = sa_session.scalars(select(Product.id).join(Product.tags).where(Tag.id == 1)
                              .order_by(Product.id)).all()
    assert [p.id for p in t.products] == want
    p1 = hsa.get(sa_session, Product, 1, include=["related.related"])
    assert [r.id for r in p1.related] == [2, 12]


def test_relationship_order_by_is_kept(Sess):
    with Sess() as s:
        b = hsa.get(s, Brand, 2, include=["products"])
        ids = [p.id for p in b.products]
        assert ids == sorted(ids) and len(ids) > 5
    with Sess() as s:
        b = hsa.get(s, Brand, 2, include=["products_by_sku_desc"])
        skus = [p.sku for p in b.products_by_sku_desc]
        want = s.scalars(select(Product.sku).where(Product.brand_id == 2)
                         .order_by(Product.sku.desc())).all()
        assert skus == want and len(skus) > 5


def test_find(sa_session, count_sql):
    with count_sql() as n:
        got = hsa.find(sa_session, Variant, {"stock_qty": {"lt": 50}}, include=["product.brand"],
                       order_by=[Variant.stock_qty, Variant.id.desc()], limit=3)
    assert len(n.statements) == 1
    assert [v.id for v in got] == [10000]
    assert got[0].product.id == 1000 and got[0].product.brand.id == 1
    got = hsa.find(sa_session, Product, {"sku": {"like": "HBR-00%"}}, order_by=["id desc"],
                   limit=2, offset=1)
    assert [p.id for p in got] == [8, 7]
    assert hsa.get(sa_session, Product, 123456) is None


def test_errors_are_harbor_errors(sa_session):
    with pytest.raises(ho.HarborError) as ei:
        hsa.load(sa_session, Product, [1], include=["nope"])
    assert ei.value.sqlstate == "42704"
    sa_session.rollback()
    with pytest.raises(ho.HarborError) as ei:
        hsa.find(sa_session, Product, {"nope": 1})
    assert ei.value.sqlstate == "42703"
    sa_session.rollback()
