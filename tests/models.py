"""Shared test models: a small library schema, written so it maps on SQLAlchemy 1.4, 2.0, 2.1.

Classic ``declarative_base()`` with ``Column(...)`` (no ``Mapped[]``), so one file serves every
supported SQLAlchemy line. Imported by pytest as the top-level module ``models`` (``tests/``
has no ``__init__.py``), so mapped classes are reported as ``models.<Class>``.

Tables and what maps them (the expected values in the tests are derived from this by hand):

=====================  ==============================  =====================================
table                  mapped by                       notes
=====================  ==============================  =====================================
users                  User                            has posts, groups, history
groups                 Group                           many-to-many with users
user_groups            (none: association table)       users <-> groups
books                  Book
book_history           BookHistory                     user <-> book with checkout dates
posts                  Post                            many-to-one to users
media                  Media                           joined-table inheritance root
ebooks                 Ebook (a Media)                 joined-table inheritance child
members                Member, StaffMember             single-table inheritance
book_archive           (none: Core only)               target of INSERT ... SELECT
inventory.stock_items  StockItem                       schema ``inventory``
inventory.restocks     (none: Core only)               schema ``inventory``
=====================  ==============================  =====================================
"""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import declarative_base, relationship

metadata = MetaData()
Base = declarative_base(metadata=metadata)

INVENTORY = "inventory"

user_groups = Table(
    "user_groups",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("group_id", Integer, ForeignKey("groups.id"), primary_key=True),
)

book_archive = Table(
    "book_archive",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
)

restocks = Table(
    "restocks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("book_id", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    schema=INVENTORY,
)


class User(Base):
    __tablename__ = "users"

    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False)

    posts = relationship("Post", back_populates="author", order_by="Post.id")
    groups = relationship(
        "Group", secondary=user_groups, back_populates="members", order_by="Group.id"
    )
    history = relationship("BookHistory", back_populates="user", order_by="BookHistory.id")


class Group(Base):
    __tablename__ = "groups"

    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False)

    members = relationship("User", secondary=user_groups, back_populates="groups")


class Book(Base):
    __tablename__ = "books"

    id = Column(Integer, primary_key=True)
    title = Column(String(200), nullable=False)

    history = relationship("BookHistory", back_populates="book")


class BookHistory(Base):
    __tablename__ = "book_history"

    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("users.id"), nullable=False)
    book_id = Column(Integer, ForeignKey("books.id"), nullable=False)
    checked_out = Column(Date, nullable=False)
    returned = Column(Date, nullable=True)

    user = relationship("User", back_populates="history")
    book = relationship("Book", back_populates="history")


class Post(Base):
    __tablename__ = "posts"

    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("users.id"), nullable=False)
    title = Column(String(200), nullable=False)

    author = relationship("User", back_populates="posts")


class Media(Base):
    """Joined-table inheritance root."""

    __tablename__ = "media"

    id = Column(Integer, primary_key=True)
    kind = Column(String(20), nullable=False)
    title = Column(String(200), nullable=False)

    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "media"}  # noqa: RUF012


class Ebook(Media):
    __tablename__ = "ebooks"

    id = Column(Integer, ForeignKey("media.id"), primary_key=True)
    file_format = Column(String(10), nullable=False)

    __mapper_args__ = {"polymorphic_identity": "ebook"}  # noqa: RUF012


class Member(Base):
    """Single-table inheritance root: members and staff share the ``members`` table."""

    __tablename__ = "members"

    id = Column(Integer, primary_key=True)
    kind = Column(String(20), nullable=False)
    name = Column(String(50), nullable=False)

    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "member"}  # noqa: RUF012


class StaffMember(Member):
    role = Column(String(50), nullable=True)

    __mapper_args__ = {"polymorphic_identity": "staff"}  # noqa: RUF012


class StockItem(Base):
    """A mapped table in the non-default schema ``inventory``."""

    __tablename__ = "stock_items"
    __table_args__ = {"schema": INVENTORY}  # noqa: RUF012

    id = Column(Integer, primary_key=True)
    book_id = Column(Integer, ForeignKey("books.id"), nullable=False)
    quantity = Column(Integer, nullable=False)

    book = relationship("Book")


users = User.__table__
groups = Group.__table__
books = Book.__table__
book_history = BookHistory.__table__
posts = Post.__table__
media = Media.__table__
ebooks = Ebook.__table__
members = Member.__table__
stock_items = StockItem.__table__
