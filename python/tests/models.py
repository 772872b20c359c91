"""The Harbor Commerce models of the seed guide, in the SQLAlchemy 1.4/2.x
compatible declarative style, with a brand, tags (many-to-many), a category
tree (self-referential) and related products (self-referential many-to-many)."""
import uuid

from sqlalchemy import (Column, ForeignKey, Integer, Numeric, String, Table, DateTime,
                        CheckConstraint, func)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()

product_tags = Table(
    "product_tags", Base.metadata,
    Column("product_id", ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)

product_links = Table(
    "product_links", Base.metadata,
    Column("product_id", ForeignKey("products.id"), primary_key=True),
    Column("related_id", ForeignKey("products.id"), primary_key=True),
)


class Brand(Base):
    __tablename__ = "brands"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)
    products = relationship("Product", back_populates="brand", order_by="Product.id")
    # a relationship ordered otherwise than by primary key
    products_by_sku_desc = relationship("Product", order_by="Product.sku.desc()", viewonly=True)


class Category(Base):
    __tablename__ = "categories"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)
    parent_id = Column(ForeignKey("categories.id"))
    parent = relationship("Category", remote_side=[id], back_populates="children")
    children = relationship("Category", back_populates="parent", order_by="Category.id")


class Tag(Base):
    __tablename__ = "tags"
    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False)
    products = relationship("Product", secondary=product_tags, back_populates="tags",
                            order_by="Product.id")


class Product(Base):
    __tablename__ = "products"
    id = Column(Integer, primary_key=True)
    sku = Column(String(32), unique=True, index=True, nullable=False)
    name = Column(String(200), nullable=False)
    price_cents = Column(Integer, nullable=False)
    price = Column(Numeric(10, 2))
    created_at = Column(DateTime(timezone=True), server_default=func.now())
    ext_id = Column(UUID(as_uuid=True), default=uuid.uuid4)
    attrs = Column(JSONB)
    brand_id = Column(ForeignKey("brands.id"), index=True)
    category_id = Column(ForeignKey("categories.id"), index=True)

    brand = relationship("Brand", back_populates="products")
    category = relationship("Category")
    variants = relationship("Variant", back_populates="product", order_by="Variant.id")
    tags = relationship("Tag", secondary=product_tags, back_populates="products", order_by="Tag.id")
    related = relationship("Product", secondary=product_links,
                           primaryjoin=id == product_links.c.product_id,
                           secondaryjoin=id == product_links.c.related_id,
                           order_by="Product.id")


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (CheckConstraint("stock_qty >= 0"),)
    id = Column(Integer, primary_key=True)
    product_id = Column(ForeignKey("products.id", ondelete="CASCADE"), index=True, nullable=False)
    size = Column(String(16), nullable=False)
    stock_qty = Column(Integer, nullable=False, default=0)

    product = relationship("Product", back_populates="variants")


class StockReservation(Base):
    """The seed's own reservation table, used by its with_for_update flow."""
    __tablename__ = "stock_reservations"
    id = Column(Integer, primary_key=True)
    variant_id = Column(ForeignKey("variants.id"), nullable=False)
    order_id = Column(String(64), nullable=False)
    qty = Column(Integer, nullable=False)
    expires_at = Column(DateTime(timezone=True), nullable=False)

    variant = relationship("Variant")
