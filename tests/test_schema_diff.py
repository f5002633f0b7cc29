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
    (Integer(), Numeric(10, 2), ("info", "type_widened")),
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
