"""How ``schema-diff`` classifies a change (pure: two snapshots of Core tables in, changes
out). The command itself is exercised end to end in tests/test_schema_cli.py."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Enum,
    Float,
    Identity,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)

from otel_sqla_lineage.model_tables import ModelSnapshot, find_models, snapshot
from otel_sqla_lineage.schema_diff import diff, render_markdown, render_text


def snap(*columns: Any, name: str = "t", extra: Any = None) -> ModelSnapshot:
    metadata = MetaData()
    Table(name, metadata, Column("id", Integer, primary_key=True), *columns)
    if extra is not None:
        extra(metadata)
    return snapshot(find_models([metadata]), source=name)


def changes(old: ModelSnapshot, new: ModelSnapshot) -> list[tuple[str, str, str | None]]:
    return [(c.severity, c.kind, c.column) for c in diff(old, new).changes]


class Colour(enum.Enum):
    red = "red"
    green = "green"


class Money(TypeDecorator):  # type: ignore[type-arg]
    impl = Numeric(12, 2)
    cache_ok = True


@pytest.mark.parametrize(("before", "after", "expected"), [
    (String(200), String(50), ("breaking", "type_narrowed")),
    (Text(), String(50), ("breaking", "type_narrowed")),
    (String(50), String(200), ("info", "type_widened")),
    (BigInteger(), Integer(), ("breaking", "type_narrowed")),
    (Integer(), SmallInteger(), ("breaking", "type_narrowed")),
    (Integer(), BigInteger(), ("info", "type_widened")),
    (Numeric(10, 2), Numeric(8, 2), ("breaking", "type_narrowed")),
    (Numeric(10, 4), Numeric(10, 2), ("breaking", "type_narrowed")),
    (Numeric(10, 2), Numeric(12, 2), ("info", "type_widened")),
    (Numeric(10, 2), Integer(), ("breaking", "type_narrowed")),
    (Float(), Integer(), ("breaking", "type_narrowed")),
    (Integer(), Numeric(12, 2), ("info", "type_widened")),
    (Integer(), Numeric(), ("info", "type_widened")),
    (Enum(Colour), Enum("red", name="colour"), ("breaking", "type_narrowed")),
    (Enum("red", name="colour"), Enum(Colour), ("info", "type_widened")),
    (String(20), Integer(), ("breaking", "type_changed")),
    (Money(), Numeric(10, 2), ("breaking", "type_narrowed")),  # a TypeDecorator's impl
])
def test_type_changes_are_classified(before: Any, after: Any,
                                     expected: tuple[str, str]) -> None:
    old = snap(Column("v", before))
    new = snap(Column("v", after))
    assert changes(old, new) == [(*expected, "v")]


# what a review found reported as widened: digits before the point are precision - scale
@pytest.mark.parametrize(("before", "after", "expected"), [
    (Numeric(10, 2), Numeric(10, 4), ("breaking", "type_narrowed")),  # 8 -> 6 integer digits
    (Integer(), Numeric(5, 2), ("breaking", "type_narrowed")),  # holds at most 999.99
    (Integer(), Numeric(10, 2), ("breaking", "type_narrowed")),  # 8 digits < 2147483647's 10
    (Integer(), Numeric(10, 0), ("info", "type_widened")),
    (Integer(), Numeric(10), ("info", "type_widened")),  # NUMERIC(10) is NUMERIC(10, 0)
    (BigInteger(), Numeric(20, 2), ("breaking", "type_narrowed")),  # 18 < 19 digits
    (BigInteger(), Numeric(21, 2), ("info", "type_widened")),
    (SmallInteger(), Numeric(6, 2), ("breaking", "type_narrowed")),  # 4 < 5 digits
    (SmallInteger(), Numeric(7, 2), ("info", "type_widened")),
    (Numeric(10, 2), Numeric(12, 4), ("info", "type_widened")),  # 8 -> 8 digits, 2 -> 4
    (Numeric(10, 2), Numeric(11, 1), ("breaking", "type_narrowed")),  # fewer decimals
    (Numeric(), Numeric(30, 10), ("breaking", "type_narrowed")),  # unbounded -> bounded
    (Numeric(10, 2), Numeric(), ("info", "type_widened")),
    (Float(53), Float(24), ("breaking", "type_narrowed")),
])
def test_numeric_digits_before_and_after_the_point_both_count(
    before: Any, after: Any, expected: tuple[str, str],
) -> None:
    assert changes(snap(Column("v", before)), snap(Column("v", after))) == [(*expected, "v")]


def test_numeric_narrowing_says_which_digits_are_lost() -> None:
    found = diff(snap(Column("price", Numeric(10, 2))),
                 snap(Column("price", Numeric(10, 4)))).changes
    assert [c.message for c in found] == [
        "t.price type narrowed (fewer integer digits): NUMERIC(10, 2) -> NUMERIC(10, 4)"]
    found = diff(snap(Column("qty", Integer())), snap(Column("qty", Numeric(5, 2)))).changes
    assert [c.message for c in found] == [
        "t.qty type narrowed (3 integer digits hold fewer values than the integer's 10): "
        "INTEGER -> NUMERIC(5, 2)"]


def test_an_added_not_null_column_without_a_default_breaks_writers() -> None:
    old = snap(Column("name", String(20)))
    new = snap(Column("name", String(20)), Column("tenant", Integer, nullable=False))
    found = diff(old, new).changes
    assert [(c.severity, c.kind, c.column) for c in found] == [
        ("breaking", "required_column_added", "tenant")]
    assert found[0].message == ("t.tenant added (INTEGER, NOT NULL, no default): writers "
                                "that do not set it are rejected")
    assert "| **breaking** | `t` | `tenant` | NOT NULL column added, no default |  | " \
        "`INTEGER` |" in render_markdown(diff(old, new))


@pytest.mark.parametrize("column", [
    Column("tenant", Integer, nullable=False, default=1),
    Column("tenant", Integer, nullable=False, server_default="1"),
    Column("tenant", Integer, Identity(), nullable=False),
    Column("tenant", Integer, nullable=True),
], ids=["default", "server_default", "identity", "nullable"])
def test_an_added_column_that_writers_may_leave_out_is_information(column: Column[Any]) -> None:
    old = snap(Column("name", String(20)))
    new = snap(Column("name", String(20)), column)
    assert changes(old, new) == [("info", "column_added", "tenant")]


def test_a_new_table_reports_no_added_columns_whatever_their_keys() -> None:
    def add_table(metadata: MetaData) -> None:
        Table("invoices", metadata, Column("id", Integer, primary_key=True),
              Column("number", String(20), nullable=False))

    old = snap()
    new = snap(extra=add_table)
    assert changes(old, new) == [("info", "table_added", None)]
    invoices = new.table("invoices")
    assert invoices is not None
    assert [(c.name, c.has_default) for c in invoices.columns] == [
        ("id", True), ("number", False)]  # the autoincrement key is numbered by the database


def test_an_added_autoincrement_key_is_numbered_by_the_database() -> None:
    metadata = MetaData()
    Table("t", metadata, Column("code", String(5), nullable=False))
    old = snapshot(find_models([metadata]))
    new = snap(Column("code", String(5), nullable=False))
    assert changes(old, new) == [("breaking", "primary_key_changed", None),
                                 ("info", "column_added", "id")]


def test_a_snapshot_written_before_has_default_reads_as_no_default() -> None:
    current = snap(Column("tenant", Integer, nullable=False, server_default="1"))
    raw = current.to_dict()
    for table in raw["tables"]:
        for column in table["columns"]:
            del column["has_default"]
    old_format = ModelSnapshot.from_dict(raw)
    assert [c.has_default for c in old_format.tables[0].columns] == [False, False]
    assert changes(snap(), old_format) == [("breaking", "required_column_added", "tenant")]


def test_identical_models_have_no_changes() -> None:
    assert changes(snap(Column("v", String(20))), snap(Column("v", String(20)))) == []


def test_nullable_to_not_null_breaks_and_the_reverse_is_information() -> None:
    nullable = snap(Column("v", String(20), nullable=True))
    required = snap(Column("v", String(20), nullable=False))
    assert changes(nullable, required) == [("breaking", "became_not_null", "v")]
    assert changes(required, nullable) == [("info", "became_nullable", "v")]


def test_a_dropped_and_an_added_column_of_one_type_is_a_probable_rename() -> None:
    old = snap(Column("title", String(200)), Column("n", Integer))
    new = snap(Column("headline", String(200)), Column("n", Integer))
    found = diff(old, new).changes
    assert [(c.kind, c.old, c.new) for c in found] == [("column_renamed", "title", "headline")]
    assert found[0].message == ("t.title probably renamed to headline (VARCHAR(200)); "
                                "consumers of title lose it")


def test_a_dropped_and_an_added_column_of_different_types_are_not_a_rename() -> None:
    old = snap(Column("title", String(200)))
    new = snap(Column("pages", Integer))
    assert changes(old, new) == [("breaking", "column_dropped", "title"),
                                 ("info", "column_added", "pages")]


def test_among_several_rename_candidates_the_nearest_position_wins() -> None:
    old = snap(Column("a", String(10)), Column("b", String(10)), Column("c", String(10)))
    new = snap(Column("a", String(10)), Column("x", String(10)), Column("c", String(10)),
               Column("y", String(10)))
    found = diff(old, new).changes
    assert [(c.kind, c.old, c.new) for c in found if c.severity == "breaking"] == [
        ("column_renamed", "b", "x")]
    assert [(c.kind, c.column) for c in found if c.severity == "info"] == [
        ("column_added", "y")]


def test_dropped_added_and_renamed_tables() -> None:
    def add_tables(*names: str) -> Any:
        def add(metadata: MetaData) -> None:
            for n in names:
                Table(n, metadata, Column("k", Integer, primary_key=True),
                      Column(f"{n}_only", String(5)))
        return add

    old = snap(extra=add_tables("gone", "kept"))
    new = snap(extra=add_tables("kept", "fresh"))
    assert changes(old, new) == [("breaking", "table_dropped", None),
                                 ("info", "table_added", None)]
    moved = ModelSnapshot(tuple(
        t if t.name != "gone" else type(t)(name="gone_v2", schema="archive", columns=t.columns,
                                           primary_key=t.primary_key)
        for t in old.tables
    ))
    renamed = diff(old, moved).changes
    assert [(c.kind, c.old, c.new) for c in renamed] == [
        ("table_renamed", "gone", "archive.gone_v2")]


def test_a_changed_primary_key_breaks() -> None:
    old = snap(Column("code", String(5)))
    metadata = MetaData()
    Table("t", metadata, Column("id", Integer), Column("code", String(5), primary_key=True))
    new = snapshot(find_models([metadata]))
    kinds = {c.kind: c for c in diff(old, new).changes}
    assert kinds["primary_key_changed"].message == (
        "t primary key changed from (id) to (code)")
    assert kinds["primary_key_changed"].severity == "breaking"


def test_snapshots_survive_json() -> None:
    old = snap(Column("v", Enum(Colour)), Column("m", Money()))
    assert ModelSnapshot.from_dict(json.loads(json.dumps(old.to_dict()))) == old


def test_text_and_markdown_reports_lead_with_the_verdict() -> None:
    result = diff(snap(Column("v", String(20)), name="books"),
                  snap(Column("v", String(10)), Column("w", Integer), name="books"))
    assert render_text(result).splitlines()[:3] == [
        "schema-diff books -> books: 1 breaking change, 1 other change", "", "BREAKING"]
    markdown = render_markdown(result)
    assert markdown.startswith("### :warning: Schema changes: 1 breaking change, "
                               "1 other change\n")
    assert "| **breaking** | `books` | `v` | type narrowed | `VARCHAR(20)` | `VARCHAR(10)` |" \
        in markdown
    quiet = render_markdown(diff(snap(name="books"), snap(name="books")))
    assert quiet.startswith("### Schema changes: none\n")
