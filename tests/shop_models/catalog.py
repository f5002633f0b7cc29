"""The catalog: a ``registry()`` with its generated base; joined-table inheritance and a
many-to-many association table."""

from __future__ import annotations

import enum

from sqlalchemy import Column, Enum, ForeignKey, Integer, Numeric, String, Table, Text
from sqlalchemy.orm import registry, relationship

mapper_registry = registry()
Base = mapper_registry.generate_base()


class Status(enum.Enum):
    draft = "draft"
    active = "active"
    retired = "retired"


product_categories = Table(
    "product_categories",
    mapper_registry.metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("category_id", Integer, ForeignKey("categories.id"), primary_key=True),
    comment="which categories a product is listed in",
)


class Product(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "products"
    __table_args__ = {"comment": "everything the shop sells"}  # noqa: RUF012
    id = Column(Integer, primary_key=True)
    kind = Column(String(20), nullable=False)
    sku = Column(String(32), nullable=False, unique=True, comment="stock keeping unit")
    name = Column(String(200), nullable=False)
    price = Column(Numeric(10, 2), nullable=False, comment="unit price in EUR")
    status = Column(Enum(Status, name="product_status"), nullable=False)
    description = Column(Text)
    categories = relationship("Category", secondary=product_categories,
                              back_populates="products")
    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "product"}  # noqa: RUF012


class BookProduct(Product):
    __tablename__ = "book_details"
    id = Column(Integer, ForeignKey("products.id"), primary_key=True)
    isbn = Column(String(13), nullable=False)
    pages = Column(Integer)
    __mapper_args__ = {"polymorphic_identity": "book"}  # noqa: RUF012


class Game(Product):
    __tablename__ = "games"
    id = Column(Integer, ForeignKey("products.id"), primary_key=True)
    min_players = Column(Integer, nullable=False)
    max_players = Column(Integer, nullable=False)
    __mapper_args__ = {"polymorphic_identity": "game"}  # noqa: RUF012


class Category(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "categories"
    id = Column(Integer, primary_key=True)
    name = Column(String(80), nullable=False)
    parent_id = Column(Integer, ForeignKey("categories.id"))
    products = relationship(Product, secondary=product_categories,
                            back_populates="categories")
