"""What changed between two model snapshots, and which changes break consumers (pure).

Breaking (what a downstream reader or an existing writer would trip over): a dropped
table or column, a probable rename of either (a dropped and an added column of the same
type in one table; a dropped and an added table with the same columns), a narrowed type
(shorter string, smaller integer, a numeric with fewer decimals or fewer integer digits,
an integer into a numeric with too few integer digits for it, fewer enum values, decimals
to integers), a type changed to an unrelated one, a nullable column made NOT NULL, an
added NOT NULL column with no default (existing INSERTs do not set it), a changed primary
key. Everything else (added tables, added nullable or defaulted columns, widened types,
NOT NULL relaxed, comments) is reported as information.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Final, Literal

from otel_sqla_lineage.model_tables import ColumnSnapshot, ModelSnapshot, TableSnapshot

Severity = Literal["breaking", "info"]
FORMATS: Final = ("text", "json", "markdown")


@dataclass(frozen=True, slots=True)
class Change:
    severity: Severity
    kind: str  # table_dropped, column_renamed, type_narrowed, ... (stable, for scripts)
    table: str
    column: str | None
    message: str
    old: str | None = None
    new: str | None = None


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    old_source: str
    new_source: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.severity == "breaking")

    @property
    def info(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.severity == "info")


def diff(old: ModelSnapshot, new: ModelSnapshot) -> SchemaDiff:
    changes: list[Change] = []
    old_tables = {t.key: t for t in old.tables}
    new_tables = {t.key: t for t in new.tables}
    dropped = [t for k, t in old_tables.items() if k not in new_tables]
    added = [t for k, t in new_tables.items() if k not in old_tables]
    for before, after in _pair_tables(dropped, added):
        changes.append(Change(
            "breaking", "table_renamed", before.key, None,
            f"table {before.key} probably renamed to {after.key} (same columns); consumers "
            f"of {before.key} lose it", before.key, after.key,
        ))
        dropped.remove(before)
        added.remove(after)
    changes += [
        Change("breaking", "table_dropped", t.key, None, f"table {t.key} dropped", t.key, None)
        for t in dropped
    ]
    for key in old_tables.keys() & new_tables.keys():
        changes += _table_changes(old_tables[key], new_tables[key])
    changes += [
        Change("info", "table_added", t.key, None,
               f"table {t.key} added ({len(t.columns)} columns)", None, t.key)
        for t in added
    ]
    order = {"breaking": 0, "info": 1}
    changes.sort(key=lambda c: (order[c.severity], c.table, c.column or "", c.kind))
    return SchemaDiff(old.source, new.source, tuple(changes))


def _signature(table: TableSnapshot) -> tuple[tuple[str, str], ...]:
    return tuple((c.name, c.type) for c in table.columns)


def _pair_tables(
    dropped: list[TableSnapshot], added: list[TableSnapshot]
) -> list[tuple[TableSnapshot, TableSnapshot]]:
    pairs = []
    free = list(added)
    for before in dropped:
        same = [t for t in free if _signature(t) == _signature(before)]
        if len(same) == 1:
            pairs.append((before, same[0]))
            free.remove(same[0])
    return pairs


def _table_changes(old: TableSnapshot, new: TableSnapshot) -> list[Change]:
    out: list[Change] = []
    table = old.key
    new_names = {c.name for c in new.columns}
    old_names = {c.name for c in old.columns}
    dropped = [c for c in old.columns if c.name not in new_names]
    added = [c for c in new.columns if c.name not in old_names]
    for before, after in _pair_columns(old, new, dropped, added):
        out.append(Change(
            "breaking", "column_renamed", table, before.name,
            f"{table}.{before.name} probably renamed to {after.name} ({after.type}); "
            f"consumers of {before.name} lose it", before.name, after.name,
        ))
        dropped.remove(before)
        added.remove(after)
    out += [
        Change("breaking", "column_dropped", table, c.name,
               f"{table}.{c.name} dropped (was {c.type})", c.type, None)
        for c in dropped
    ]
    for after in added:
        if not after.nullable and not after.has_default:
            out.append(Change(
                "breaking", "required_column_added", table, after.name,
                f"{table}.{after.name} added ({after.type}, NOT NULL, no default): writers "
                "that do not set it are rejected", None, after.type))
        else:
            default = ", NOT NULL with a default" if not after.nullable else ""
            out.append(Change("info", "column_added", table, after.name,
                              f"{table}.{after.name} added ({after.type}{default})",
                              None, after.type))
    for before in old.columns:
        after_or_none = new.column(before.name)
        if after_or_none is not None:
            out += _column_changes(table, before, after_or_none)
    if old.primary_key != new.primary_key:
        out.append(Change(
            "breaking", "primary_key_changed", table, None,
            f"{table} primary key changed from ({', '.join(old.primary_key)}) to "
            f"({', '.join(new.primary_key)})",
            ",".join(old.primary_key), ",".join(new.primary_key),
        ))
    if old.comment != new.comment:
        out.append(Change("info", "comment_changed", table, None,
                          f"{table} comment changed", old.comment, new.comment))
    return out


def _pair_columns(
    old: TableSnapshot, new: TableSnapshot,
    dropped: list[ColumnSnapshot], added: list[ColumnSnapshot],
) -> list[tuple[ColumnSnapshot, ColumnSnapshot]]:
    """A dropped and an added column of the same type: probably one renamed. With several
    candidates, the one nearest the dropped column's position wins."""
    position = {c.name: i for i, c in enumerate(old.columns)}
    new_position = {c.name: i for i, c in enumerate(new.columns)}
    pairs = []
    free = list(added)
    for before in dropped:
        same = [c for c in free if c.type == before.type]
        if not same:
            continue
        chosen = min(same, key=lambda c: abs(new_position[c.name] - position[before.name]))
        pairs.append((before, chosen))
        free.remove(chosen)
    return pairs


def _column_changes(table: str, old: ColumnSnapshot, new: ColumnSnapshot) -> list[Change]:
    out: list[Change] = []
    where = f"{table}.{old.name}"
    verdict = _compare_types(old, new)
    if verdict is not None:
        severity, kind, why = verdict
        out.append(Change(severity, kind, table, old.name,
                          f"{where} type {why}: {old.type} -> {new.type}", old.type, new.type))
    if old.nullable and not new.nullable:
        out.append(Change("breaking", "became_not_null", table, old.name,
                          f"{where} made NOT NULL (was nullable): rows without it are "
                          "rejected", "NULL", "NOT NULL"))
    elif new.nullable and not old.nullable:
        out.append(Change("info", "became_nullable", table, old.name,
                          f"{where} now nullable (was NOT NULL): readers may see NULLs",
                          "NOT NULL", "NULL"))
    if old.comment != new.comment:
        out.append(Change("info", "comment_changed", table, old.name,
                          f"{where} comment changed", old.comment, new.comment))
    return out


_NARROWED: Final = "type_narrowed"
_WIDENED: Final = "type_widened"


def _compare_types(
    old: ColumnSnapshot, new: ColumnSnapshot
) -> tuple[Severity, str, str] | None:
    """(severity, kind, why) or None when the type did not change."""
    if (old.type, old.family, old.length, old.precision, old.scale, old.size, old.values) == (
        new.type, new.family, new.length, new.precision, new.scale, new.size, new.values
    ):
        return None
    if old.family == new.family:
        family = old.family
        if family == "integer" and old.size and new.size and old.size != new.size:
            return _by(new.size < old.size, "integer size")
        if family in ("string", "binary") and old.length != new.length:
            if _less(old.length, new.length):
                return "breaking", _NARROWED, "narrowed (shorter)"
            return "info", _WIDENED, "widened (longer)"
        if family == "numeric":
            old_digits, new_digits = _integer_digits(old), _integer_digits(new)
            old_scale, new_scale = _scale(old), _scale(new)
            if _less(old_scale, new_scale):
                return "breaking", _NARROWED, "narrowed (fewer decimals)"
            if _less(old_digits, new_digits):
                return "breaking", _NARROWED, "narrowed (fewer integer digits)"
            if _more(old_scale, new_scale) or _more(old_digits, new_digits):
                return "info", _WIDENED, "widened (more digits)"
        if family == "float":
            if _less(old.precision, new.precision):
                return "breaking", _NARROWED, "narrowed (less precision)"
            if _more(old.precision, new.precision):
                return "info", _WIDENED, "widened (more precision)"
        if family == "enum":
            lost = set(old.values or ()) - set(new.values or ())
            if lost:
                return ("breaking", _NARROWED,
                        f"narrowed (values {', '.join(sorted(lost))} removed)")
            return "info", _WIDENED, "widened (values added)"
        return "info", "type_changed", "changed within its family"
    pair = (old.family, new.family)
    if pair in (("numeric", "integer"), ("float", "integer")):
        return "breaking", _NARROWED, "narrowed (decimals to integer)"
    if pair in (("string", "enum"),):
        return "breaking", _NARROWED, "narrowed (free text to enumerated values)"
    if pair == ("integer", "numeric"):
        needed = _INTEGER_DIGITS.get(old.size or 4, 10)
        digits = _integer_digits(new)
        if digits is not None and digits < needed:
            return ("breaking", _NARROWED,
                    f"narrowed ({digits} integer digits hold fewer values than the "
                    f"integer's {needed})")
        return "info", _WIDENED, "widened"
    if pair in (("integer", "float"), ("enum", "string")):
        return "info", _WIDENED, "widened"
    return "breaking", "type_changed", "changed"


# decimal digits of the largest value of a 2-, 4- and 8-byte integer (32767, 2147483647,
# 9223372036854775807): a NUMERIC needs as many integer digits to hold every value
_INTEGER_DIGITS: Final = {2: 5, 4: 10, 8: 19}


def _integer_digits(column: ColumnSnapshot) -> int | None:
    """Digits before the decimal point of a NUMERIC(p, s): p - s (None: unbounded)."""
    if column.precision is None:
        return None
    return column.precision - (column.scale or 0)


def _scale(column: ColumnSnapshot) -> int | None:
    """Digits after the decimal point: NUMERIC(p) is NUMERIC(p, 0); a bare NUMERIC is
    unbounded (None), whatever ``scale=`` says (it only rounds on the Python side)."""
    if column.precision is None:
        return None
    return column.scale or 0


def _by(narrower: bool, what: str) -> tuple[Severity, str, str]:
    if narrower:
        return "breaking", _NARROWED, f"narrowed (smaller {what})"
    return "info", _WIDENED, f"widened (larger {what})"


def _less(old: int | None, new: int | None) -> bool:
    """``new`` bounds the value more tightly than ``old`` (None: unbounded)."""
    return new is not None and (old is None or new < old)


def _more(old: int | None, new: int | None) -> bool:
    return old is not None and (new is None or new > old)


# -- rendering -------------------------------------------------------------------------------


def render(result: SchemaDiff, fmt: str) -> str:
    if fmt == "json":
        return render_json(result)
    if fmt == "markdown":
        return render_markdown(result)
    return render_text(result)


def _summary(result: SchemaDiff) -> str:
    n, m = len(result.breaking), len(result.info)
    return (f"{n} breaking change{'s' if n != 1 else ''}, "
            f"{m} other change{'s' if m != 1 else ''}")


def render_text(result: SchemaDiff) -> str:
    lines = [f"schema-diff {result.old_source} -> {result.new_source}: {_summary(result)}"]
    if result.breaking:
        lines += ["", "BREAKING"] + [f"  {c.message}" for c in result.breaking]
    if result.info:
        lines += ["", "OTHER"] + [f"  {c.message}" for c in result.info]
    return "\n".join(lines) + "\n"


def render_json(result: SchemaDiff) -> str:
    return json.dumps({
        "old": result.old_source,
        "new": result.new_source,
        "breaking": len(result.breaking),
        "changes": [asdict(c) for c in result.changes],
    }, indent=2) + "\n"


_LABELS: Final = {
    "table_renamed": "table probably renamed",
    "column_renamed": "column probably renamed",
    "became_not_null": "made NOT NULL",
    "became_nullable": "made nullable",
    "required_column_added": "NOT NULL column added, no default",
}


def _cell(value: str | None) -> str:
    if value is None or value == "":
        return ""
    return "`" + value.replace("|", "\\|").replace("`", "'") + "`"


def render_markdown(result: SchemaDiff) -> str:
    """For a pull-request comment: a headline a reviewer sees first, then a table."""
    if result.breaking:
        headline = f"### :warning: Schema changes: {_summary(result)}"
    elif result.info:
        headline = f"### Schema changes: {_summary(result)}"
    else:
        headline = "### Schema changes: none"
    lines = [headline, "",
             f"Models `{result.old_source}` → `{result.new_source}`.", ""]
    if result.changes:
        lines += ["| | table | column | change | before | after |",
                  "|---|---|---|---|---|---|"]
        for c in result.changes:
            mark = "**breaking**" if c.severity == "breaking" else "info"
            what = _LABELS.get(c.kind, c.kind.replace("_", " "))
            lines.append(f"| {mark} | {_cell(c.table)} | {_cell(c.column)} | {what} | "
                         f"{_cell(c.old)} | {_cell(c.new)} |")
        lines.append("")
    return "\n".join(lines)
