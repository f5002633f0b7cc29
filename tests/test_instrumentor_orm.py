"""ORM statements: the span of each carries the mapped classes and tables it touches.

Unit tier, SQLite (``inventory`` is an attached database standing in for a schema). Expected
values are written out from tests/models.py by hand; every action is also checked to give
exactly one span per statement the driver ran (``Library.run``).
"""

from __future__ import annotations

import datetime

import pytest
from instrumentor_support import SQLA_VERSION, expected, lineage
from models import (
    Book,
    BookHistory,
    Ebook,
    Group,
    Media,
    Member,
    Post,
    StaffMember,
    StockItem,
    User,
    book_archive,
    user_groups,
)
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import aliased, joinedload, selectinload

# --- reads -------------------------------------------------------------------------------

SQLALCHEMY_14 = SQLA_VERSION == (1, 4)


def test_session_get_reports_mapper_and_read_table(library):
    session = library.session()

    spans = library.run(lambda: session.get(User, 1))

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
    ]


def test_select_model_reports_mapper_table_and_orm_source(library):
    session = library.session()

    spans = library.run(lambda: session.execute(select(User).where(User.name == "ann")).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
    ]


def test_select_of_mapped_columns_reports_their_mapper(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(User.name)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
    ]


def test_count_over_select_from_model_reports_mapper(library):
    session = library.session()

    spans = library.run(
        lambda: session.execute(select(func.count()).select_from(Book)).scalar_one()
    )

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="books", mappers=("models.Book",),
                 read=("books",)),
    ]


def test_legacy_query_reports_mapper_and_table(library):
    session = library.session()

    spans = library.run(lambda: session.query(Book).filter(Book.title == "Dune").all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="books", mappers=("models.Book",),
                 read=("books",)),
    ]


def test_join_across_models_reports_every_mapper_and_table_and_no_collection(library):
    session = library.session()
    stmt = (
        select(User.name, Book.title)
        .join(BookHistory, BookHistory.user_id == User.id)
        .join(Book, Book.id == BookHistory.book_id)
        .where(BookHistory.returned.is_(None))
    )

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm",
                 mappers=("models.Book", "models.BookHistory", "models.User"),
                 read=("book_history", "books", "users")),
    ]


def test_join_along_relationship_reports_both_mappers(library):
    session = library.session()

    spans = library.run(lambda: session.execute(select(Post).join(Post.author)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Post", "models.User"),
                 read=("posts", "users")),
    ]


def test_relationship_any_criteria_reads_the_related_table(library):
    session = library.session()
    stmt = select(User).where(User.posts.any(Post.title == "hello"))

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Post", "models.User"),
                 read=("posts", "users")),
    ]


def test_orm_select_with_core_subquery_reads_both_tables(library):
    session = library.session()
    stmt = select(User).where(User.id.in_(select(user_groups.c.user_id)))

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.User",), read=("user_groups", "users")),
    ]


def test_same_orm_statement_run_twice_is_enriched_both_times(library):
    session = library.session()
    stmt = select(Book).where(Book.id == 1)

    spans = library.run(lambda: [session.execute(stmt).all(), session.execute(stmt).all()])

    one = expected("SELECT", "orm", collection="books", mappers=("models.Book",),
                   read=("books",))
    assert [lineage(s) for s in spans] == [one, one]


# --- relationship loading ------------------------------------------------------------


def test_lazy_load_of_relationship_reports_target_mapper_and_table(library):
    session = library.session()
    user = session.get(User, 1)

    spans = library.run(lambda: list(user.posts))

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="posts", mappers=("models.Post",),
                 read=("posts",)),
    ]


def test_lazy_load_of_many_to_one_reports_target_mapper(library):
    session = library.session()
    history = session.get(BookHistory, 1)

    spans = library.run(lambda: history.book.title)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="books", mappers=("models.Book",),
                 read=("books",)),
    ]


def test_lazy_load_of_many_to_many_reads_association_table(library):
    session = library.session()
    user = session.get(User, 1)

    spans = library.run(lambda: list(user.groups))

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Group",), read=("groups", "user_groups")),
    ]


def test_joined_eager_load_reports_both_mappers_and_tables(library):
    session = library.session()
    stmt = select(BookHistory).options(joinedload(BookHistory.book))

    spans = library.run(lambda: session.execute(stmt).unique().all())

    # The statement loads BookHistory rows and, through the eager join, Book rows.
    # SQLAlchemy 1.4 does not annotate the eager join with its mapper (tables are still
    # right there): documented in the README.
    mappers = ("models.BookHistory",) if SQLALCHEMY_14 else ("models.Book", "models.BookHistory")
    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=mappers, read=("book_history", "books")),
    ]


def test_selectin_load_reports_a_second_statement_on_the_target_table(library):
    session = library.session()
    stmt = select(User).options(selectinload(User.posts))

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
        expected("SELECT", "orm", collection="posts", mappers=("models.Post",),
                 read=("posts",)),
    ]


def test_selectin_load_of_many_to_many_reads_association_table(library):
    session = library.session()
    stmt = select(User).options(selectinload(User.groups))

    spans = library.run(lambda: session.execute(stmt).all())

    if SQLA_VERSION >= (2, 1):
        # 2.1 selects from the association table alone ("omit join" for many-to-many)
        second = expected("SELECT", "orm", mappers=("models.Group",),
                          read=("groups", "user_groups"))
    else:
        # 1.4 / 2.0 join back to the parent: FROM users AS users_1 JOIN user_groups JOIN groups
        second = expected("SELECT", "orm", mappers=("models.Group", "models.User"),
                          read=("groups", "user_groups", "users"))
    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
        second,
    ]


# --- unit of work ----------------------------------------------------------------------


def test_flush_insert_reports_mapper_and_written_table(library):
    session = library.session()
    session.add(User(id=10, name="erin"))

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="users", mappers=("models.User",),
                 written=("users",)),
    ]


def test_flush_insert_of_several_objects_of_one_class_reports_one_span_per_statement(library):
    session = library.session()
    session.add_all([Book(id=10, title="Ulysses"), Book(id=11, title="Walden")])

    spans = library.run(session.flush)

    # SQLAlchemy may batch the rows into one executemany; either way each span is the same
    one = expected("INSERT", "orm", collection="books", mappers=("models.Book",),
                   written=("books",))
    assert [lineage(s) for s in spans] == [one] * len(spans)


def test_flush_update_reports_written_table_and_no_read(library):
    session = library.session()
    user = session.get(User, 2)
    user.name = "robert"

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "orm", collection="users", mappers=("models.User",),
                 written=("users",)),
    ]


def test_flush_delete_reports_written_table(library):
    session = library.session()
    post = session.get(Post, 1)
    session.delete(post)

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "orm", collection="posts", mappers=("models.Post",),
                 written=("posts",)),
    ]


def test_flush_of_new_object_with_date_columns_reports_its_table(library):
    session = library.session()
    session.add(BookHistory(id=10, user_id=2, book_id=1,
                            checked_out=datetime.date(2024, 3, 1)))

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="book_history",
                 mappers=("models.BookHistory",), written=("book_history",)),
    ]


def test_flush_of_many_to_many_append_writes_association_table(library):
    session = library.session()
    user = session.get(User, 2)
    group = session.get(Group, 1)
    list(user.groups)
    user.groups.append(group)

    spans = library.run(session.flush)

    # The unit of work writes association rows with plain Core statements on the engine's
    # own compiled cache, indistinguishable from the application's Core: documented as
    # source "core" (README, "Span attributes"). user_groups is no class's own table.
    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="user_groups", written=("user_groups",)),
    ]


def test_flush_of_many_to_many_remove_deletes_from_association_table(library):
    session = library.session()
    user = session.get(User, 1)
    user.groups.clear()  # loads the collection first

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "core", collection="user_groups", written=("user_groups",)),
    ]


# --- ORM bulk statements ----------------------------------------------------------------


def test_orm_bulk_insert_reports_mapper_and_one_span_per_statement(library):
    session = library.session()
    rows = [{"id": 20, "name": "fay"}, {"id": 21, "name": "gus"}, {"id": 22, "name": "hal"}]

    spans = library.run(lambda: session.execute(insert(User), rows))

    one = expected("INSERT", "orm", collection="users", mappers=("models.User",),
                   written=("users",))
    assert [lineage(s) for s in spans] == [one] * len(spans)
    assert session.scalar(select(func.count()).select_from(User)) == 5


def test_orm_bulk_insert_returning_reports_mapper(library):
    if SQLA_VERSION < (2, 0):
        pytest.skip("ORM bulk INSERT ... RETURNING with a parameter list is SQLAlchemy 2.0+")
    session = library.session()
    rows = [{"id": 30, "title": "Beloved"}, {"id": 31, "title": "Ulysses"}]

    spans = library.run(
        lambda: session.scalars(insert(Book).returning(Book.id), rows).all()
    )

    one = expected("INSERT", "orm", collection="books", mappers=("models.Book",),
                   written=("books",))
    assert [lineage(s) for s in spans] == [one] * len(spans)


def test_orm_bulk_update_with_where_reports_mapper_and_written_table(library):
    session = library.session()
    stmt = update(User).where(User.name == "bob").values(name="bobby")

    spans = library.run(lambda: session.execute(stmt))

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "orm", collection="users", mappers=("models.User",),
                 written=("users",)),
    ]


def test_orm_bulk_update_with_fetch_synchronization_reports_each_statement(library):
    session = library.session()
    stmt = (
        update(User)
        .where(User.name == "bob")
        .values(name="bobby")
        .execution_options(synchronize_session="fetch")
    )

    spans = library.run(lambda: session.execute(stmt))

    update_span = expected("UPDATE", "orm", collection="users", mappers=("models.User",),
                           written=("users",))
    if SQLA_VERSION < (2, 0):
        # 1.4 selects the matched primary keys first; 2.x uses UPDATE ... RETURNING
        assert [lineage(s) for s in spans] == [
            expected("SELECT", "orm", collection="users", mappers=("models.User",),
                     read=("users",)),
            update_span,
        ]
    else:
        assert [lineage(s) for s in spans] == [update_span]


def test_orm_bulk_update_by_primary_key_list_reports_mapper(library):
    if SQLA_VERSION < (2, 0):
        pytest.skip("ORM bulk UPDATE by primary key list is SQLAlchemy 2.0+")
    session = library.session()

    spans = library.run(
        lambda: session.execute(update(User), [{"id": 1, "name": "anne"},
                                               {"id": 2, "name": "rob"}])
    )

    one = expected("UPDATE", "orm", collection="users", mappers=("models.User",),
                   written=("users",))
    assert [lineage(s) for s in spans] == [one] * len(spans)


def test_orm_bulk_delete_reports_mapper_and_written_table(library):
    session = library.session()

    spans = library.run(lambda: session.execute(delete(Post).where(Post.user_id == 1)))

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "orm", collection="posts", mappers=("models.Post",),
                 written=("posts",)),
    ]


def test_orm_insert_from_select_reports_read_and_written_tables(library):
    session = library.session()
    stmt = insert(book_archive).from_select(
        ["id", "title"], select(Book.id, Book.title).where(Book.id == 1)
    )

    spans = library.run(lambda: session.execute(stmt))

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", mappers=("models.Book",), read=("books",),
                 written=("book_archive",)),
    ]


# --- aliases -----------------------------------------------------------------------------


def test_aliased_entity_reports_underlying_table_and_mapper(library):
    session = library.session()
    author = aliased(User, name="author")
    stmt = select(Post, author).join(author, Post.author)

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Post", "models.User"),
                 read=("posts", "users")),
    ]


def test_self_join_through_alias_touches_one_table(library):
    session = library.session()
    other = aliased(User)
    stmt = select(User.name, other.name).join(other, other.id > User.id)

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
    ]


# --- inheritance ---------------------------------------------------------------------


def test_joined_inheritance_select_of_subclass_reads_both_tables(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(Ebook)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Ebook",), read=("ebooks", "media")),
    ]


def test_joined_inheritance_select_of_base_reads_base_table_only(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(Media.title)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="media", mappers=("models.Media",),
                 read=("media",)),
    ]


def test_joined_inheritance_flush_insert_writes_each_table_with_its_own_mapper(library):
    session = library.session()
    session.add(Ebook(id=2, title="Emma (ebook)", file_format="pdf"))

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="media", mappers=("models.Media",),
                 written=("media",)),
        expected("INSERT", "orm", collection="ebooks", mappers=("models.Ebook",),
                 written=("ebooks",)),
    ]


def test_joined_inheritance_flush_update_of_both_tables(library):
    session = library.session()
    ebook = session.get(Ebook, 1)
    ebook.title = "Dune, 2nd ed."
    ebook.file_format = "mobi"

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "orm", collection="media", mappers=("models.Media",),
                 written=("media",)),
        expected("UPDATE", "orm", collection="ebooks", mappers=("models.Ebook",),
                 written=("ebooks",)),
    ]


def test_single_table_inheritance_select_of_subclass_reports_subclass(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(StaffMember)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="members", mappers=("models.StaffMember",),
                 read=("members",)),
    ]


def test_single_table_inheritance_select_of_base_reports_base(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(Member.name)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="members", mappers=("models.Member",),
                 read=("members",)),
    ]


def test_single_table_inheritance_flush_insert_reports_every_class_of_the_table(library):
    session = library.session()
    session.add(StaffMember(id=3, name="erin", role="archivist"))

    spans = library.run(session.flush)

    # members is the own table of Member and of StaffMember (single-table inheritance)
    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="members",
                 mappers=("models.Member", "models.StaffMember"), written=("members",)),
    ]


# --- schemas -----------------------------------------------------------------------------


def test_mapped_class_in_schema_reads_qualified_table(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(StockItem)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="inventory.stock_items",
                 mappers=("models.StockItem",), read=("inventory.stock_items",)),
    ]


def test_flush_insert_into_schema_table_writes_qualified_table(library):
    session = library.session()
    session.add(StockItem(id=2, book_id=2, quantity=7))

    spans = library.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="inventory.stock_items",
                 mappers=("models.StockItem",), written=("inventory.stock_items",)),
    ]


def test_join_across_schemas_reports_qualified_and_unqualified_tables(library):
    session = library.session()
    stmt = select(Book.title, StockItem.quantity).join(StockItem, StockItem.book_id == Book.id)

    spans = library.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", mappers=("models.Book", "models.StockItem"),
                 read=("books", "inventory.stock_items")),
    ]
