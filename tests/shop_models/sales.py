"""Sales: a second declarative base with its own MetaData in schema ``sales``; an
association object, single-table inheritance and a plain Core table."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import declarative_base, relationship

SALES = "sales"
metadata = MetaData(schema=SALES)
Base = declarative_base(metadata=metadata)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("entry", Text, nullable=False),
)


class Customer(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "customers"
    id = Column(Integer, primary_key=True)
    email = Column(String(254), nullable=False, unique=True)
    display_name = Column(String(100))
    vip = Column(Boolean, nullable=False, default=False)
    orders = relationship("Order", back_populates="customer")


class Order(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "orders"
    id = Column(BigInteger, primary_key=True)
    customer_id = Column(Integer, ForeignKey("sales.customers.id"), nullable=False)
    placed_at = Column(DateTime(timezone=True), nullable=False)
    total = Column(Numeric(12, 2), nullable=False)
    customer = relationship(Customer, back_populates="orders")
    lines = relationship("OrderLine", back_populates="order")


class OrderLine(Base):  # type: ignore[misc,valid-type]
    """The association object between orders and catalog products (another MetaData: the
    product id is a plain column, as across two databases)."""

    __tablename__ = "order_lines"
    order_id = Column(BigInteger, ForeignKey("sales.orders.id"), primary_key=True)
    product_id = Column(Integer, primary_key=True)
    quantity = Column(Integer, nullable=False)
    unit_price = Column(Numeric(10, 2), nullable=False)
    order = relationship(Order, back_populates="lines")


class Payment(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "payments"
    id = Column(BigInteger, primary_key=True)
    kind = Column(String(20), nullable=False)
    order_id = Column(BigInteger, ForeignKey("sales.orders.id"), nullable=False)
    amount = Column(Numeric(12, 2), nullable=False)
    card_last4 = Column(String(4))
    invoice_number = Column(String(40))
    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "payment"}  # noqa: RUF012


class CardPayment(Payment):
    __mapper_args__ = {"polymorphic_identity": "card"}  # noqa: RUF012


class InvoicePayment(Payment):
    __mapper_args__ = {"polymorphic_identity": "invoice"}  # noqa: RUF012
