"""SQL text without the literals that sit next to password/secret/token columns.

Bound parameters keep values out of most SQL; what remains is SQL written with literals
(``text("UPDATE accounts SET api_token = 'abc'")``, other languages' instrumentations,
error messages that quote the statement). :func:`redact_sql` replaces those literals with
``'***'`` and leaves every other character as it was, so table lineage parses the same.

The rule (README, "Secrets"): a column is sensitive when its name, lower-cased and without
``_``/``-``, contains one of :data:`SENSITIVE_NAME_PARTS`. A literal is redacted when it is

* the value of a sensitive column in ``INSERT INTO t (cols) VALUES (...), (...)`` or
  ``INSERT INTO t (cols) SELECT ...`` (by position);
* the operand after ``sensitive_col <op>`` (``=``, ``<>``, ``LIKE``, ``IN``, … and ``SET
  col = …``) or before ``<op> sensitive_col`` (``'x' = secret``); an operand in
  parentheses or a function call (``crypt('x', gen_salt('bf'))``) loses every literal;
* the operand after a sensitive keyword with no operator (``PASSWORD 'x'`` in ``ALTER
  ROLE``) or after ``IDENTIFIED BY``.

String literals are ``'…'`` (``''`` escaped; backslash escapes for MySQL and ``E'…'``),
``$$…$$``/``$tag$…$tag$`` (PostgreSQL) and numbers; identifiers may be quoted with
``"…"``, backticks or ``[…]``. Results are cached per SQL string, and SQL with no quote,
dollar sign or sensitive word returns at once: the per-statement cost is a cache look-up.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Final, NamedTuple

REDACTED: Final = "'***'"
SENSITIVE_NAME_PARTS: Final = (
    "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "credential",
    "privatekey", "accesskey", "authkey", "sessionkey", "signingkey", "encryptionkey",
)
# a cheap pre-check on the whole statement (separators allowed inside the words)
SENSITIVE_ANYWHERE = re.compile(
    r"pass|pwd|secret|token|api[_-]?key|credential|(?:private|access|auth|session|signing|"
    r"encryption)[_-]?key|identified",
    re.IGNORECASE,
)
_REDACT_CACHE_SIZE: Final = 4096
_MAX_CACHED_CHARS: Final = 10_000
_MAX_LEXED_CHARS: Final = 1_000_000


def is_sensitive_name(name: str) -> bool:
    """``password_hash``, ``API-Key``, ``"clientSecret"``: sensitive; ``author``: not."""
    folded = name.strip('"`[]').lower().replace("_", "").replace("-", "")
    return any(part in folded for part in SENSITIVE_NAME_PARTS)


def redact_sql(sql: str) -> str:
    """``sql`` with the literals next to sensitive columns replaced by ``'***'``; the same
    string object when there is nothing to redact. Never raises."""
    if len(sql) > _MAX_CACHED_CHARS:
        return _redact(sql)  # not cached: the cache is bounded in entries, keep them small
    redacted = _redacted_or_none(sql)
    # the caller's own object when nothing changed (an equal string cached from an earlier
    # statement is another object): callers test ``is`` to skip work per statement
    return sql if redacted is None else redacted


@functools.lru_cache(maxsize=_REDACT_CACHE_SIZE)
def _redacted_or_none(sql: str) -> str | None:
    redacted = _redact(sql)
    return None if redacted is sql else redacted


def _redact(sql: str) -> str:
    if not sql or not SENSITIVE_ANYWHERE.search(sql) or not _MAY_HOLD_LITERAL.search(sql):
        return sql
    if len(sql) > _MAX_LEXED_CHARS:
        return _QUOTED.sub(REDACTED, sql)  # too long to read closely: every string goes
    try:
        tokens = list(_tokens(sql))
        marked = _sensitive_literals(tokens)
    except Exception:  # pragma: no cover - the lexer is total; belt and braces
        return _QUOTED.sub(REDACTED, sql)
    if not marked:
        return sql
    out: list[str] = []
    last = 0
    for index in sorted(marked):
        token = tokens[index]
        out.append(sql[last:token.start])
        out.append(REDACTED)
        last = token.end
    out.append(sql[last:])
    return "".join(out)


_QUOTED = re.compile(r"'(?:[^']|'')*'?")
_MAY_HOLD_LITERAL = re.compile(r"['$0-9]")

# -- lexer ---------------------------------------------------------------------------------

# kinds
_WORD, _QUOTED_IDENT, _STRING, _NUMBER, _PUNCT, _PLACEHOLDER = range(6)
_LITERALS = (_STRING, _NUMBER)


class _Token(NamedTuple):
    kind: int
    text: str  # upper-cased words, unquoted identifiers, the punctuation itself
    start: int
    end: int


_WORD_CHARS = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PLACEHOLDER_RE = re.compile(r"\$\d+|%\([A-Za-z_][A-Za-z0-9_]*\)s|%s|\?|:[A-Za-z_]\w*")
_OPERATORS = ("<=>", "<>", "!=", "<=", ">=", "==", "::", "||")


def _tokens(sql: str) -> Iterator[_Token]:
    """SQL tokens without whitespace and comments; unterminated strings run to the end."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'":
            j = _string_end(sql, i, backslash=False)
            yield _Token(_STRING, "", i, j)
            i = j
        elif c in "eEnNbBxX" and i + 1 < n and sql[i + 1] == "'":
            j = _string_end(sql, i + 1, backslash=c in "eE")
            yield _Token(_STRING, "", i, j)
            i = j
        elif c == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                close = sql.find(tag.group(0), tag.end())
                j = n if close < 0 else close + len(tag.group(0))
                yield _Token(_STRING, "", i, j)
                i = j
            else:
                m = _PLACEHOLDER_RE.match(sql, i)
                j = m.end() if m else i + 1
                yield _Token(_PLACEHOLDER if m else _PUNCT, sql[i:j], i, j)
                i = j
        elif c in "\"`[":
            closing = {"\"": "\"", "`": "`", "[": "]"}[c]
            j = i + 1
            while True:
                k = sql.find(closing, j)
                if k < 0:
                    j = n
                    break
                if closing != "]" and sql.startswith(closing * 2, k):
                    j = k + 2
                    continue
                j = k + 1
                break
            yield _Token(_QUOTED_IDENT, sql[i + 1:j - 1], i, j)
            i = j
        elif c.isdigit() or (c == "." and i + 1 < n and sql[i + 1].isdigit()):
            m = _NUMBER_RE.match(sql, i)
            j = m.end() if m else i + 1
            yield _Token(_NUMBER, sql[i:j], i, j)
            i = j
        elif c in "%?:" and (m := _PLACEHOLDER_RE.match(sql, i)) is not None:
            yield _Token(_PLACEHOLDER, m.group(0), i, m.end())
            i = m.end()
        else:
            m = _WORD_CHARS.match(sql, i)
            if m:
                yield _Token(_WORD, m.group(0).upper(), i, m.end())
                i = m.end()
                continue
            op = next((o for o in _OPERATORS if sql.startswith(o, i)), c)
            yield _Token(_PUNCT, op, i, i + len(op))
            i += len(op)


def _string_end(sql: str, quote: int, *, backslash: bool) -> int:
    """Index after the string literal opening at ``quote`` (``''`` and, where the dialect
    has them, ``\\'`` escapes)."""
    i, n = quote + 1, len(sql)
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == "'":
            if i + 1 < n and sql[i + 1] == "'":
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


# -- rules ---------------------------------------------------------------------------------

_COMPARISONS = frozenset({"=", "==", "<>", "!=", "<", ">", "<=", ">=", "<=>", "LIKE", "ILIKE",
                          "IN", "IS", "NOT", "REGEXP", "RLIKE", "GLOB", "SIMILAR", "TO", ":="})
_TYPED_LITERAL_PREFIXES = frozenset({"E", "N", "B", "X", "DATE", "TIME", "TIMESTAMP",
                                     "INTERVAL", "BINARY", "_UTF8MB4", "_UTF8"})
_CLAUSE_ENDS = frozenset({"FROM", "WHERE", "RETURNING", "ON", "UNION", "EXCEPT", "INTERSECT",
                          "GROUP", "ORDER", "LIMIT", "HAVING", "WINDOW", "INTO", ";"})


def _is_sensitive_token(token: _Token) -> bool:
    return token.kind in (_WORD, _QUOTED_IDENT) and is_sensitive_name(token.text)


def _is_punct(token: _Token, text: str) -> bool:
    return token.kind == _PUNCT and token.text == text


class _Statement:
    """Tokens with their parentheses matched once, so each rule is linear in the tokens."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.closing: dict[int, int] = {}
        self.opening: dict[int, int] = {}
        stack: list[int] = []
        for i, token in enumerate(tokens):
            if _is_punct(token, "("):
                stack.append(i)
            elif _is_punct(token, ")") and stack:
                j = stack.pop()
                self.closing[j] = i
                self.opening[i] = j
        # index ranges [a, b) whose literals are redacted
        self.ranges: list[tuple[int, int]] = []

    def mark(self, start: int, end: int) -> None:
        if start < end:
            self.ranges.append((start, end))

    def marked_literals(self) -> set[int]:
        out: set[int] = set()
        reach = 0
        for start, end in sorted(self.ranges):
            for i in range(max(start, reach), end):
                if self.tokens[i].kind in _LITERALS:
                    out.add(i)
            reach = max(reach, end)
        return out


def _sensitive_literals(tokens: list[_Token]) -> set[int]:
    stmt = _Statement(tokens)
    _insert_values(stmt)
    n = len(tokens)
    for i, token in enumerate(tokens):
        if _is_sensitive_token(token):
            if i + 1 < n and _is_punct(tokens[i + 1], "."):
                continue  # a table or schema named "secrets": its columns decide
            # col <op> operand  /  PASSWORD 'x'
            j = i + 1
            while j < n and j - i < 4 and tokens[j].kind in (_PUNCT, _WORD) and (
                tokens[j].text in _COMPARISONS
            ):
                j += 1
            _operand(stmt, j)
            # operand <op> col
            k = i - 1
            if k >= 1 and _is_punct(tokens[k], "."):
                k -= 2  # table.col: step over the qualifier
            ops = 0
            while k >= 0 and ops < 3 and tokens[k].kind in (_PUNCT, _WORD) and (
                tokens[k].text in _COMPARISONS
            ):
                k -= 1
                ops += 1
            if ops and k >= 0:
                _operand_before(stmt, k)
        elif token.kind == _WORD and token.text == "IDENTIFIED":
            j = i + 1
            if j < n and tokens[j].text == "BY":
                j += 1
                if j < n and tokens[j].text == "PASSWORD":
                    j += 1
                _operand(stmt, j)
    return stmt.marked_literals()


def _operand(stmt: _Statement, j: int) -> None:
    """The literals of the expression starting at ``j``: a literal, a parenthesised list or
    a function call (every literal inside), optionally signed or typed (``DATE '…'``)."""
    tokens = stmt.tokens
    for _ in range(4):
        if j >= len(tokens):
            return
        token = tokens[j]
        if token.kind in _LITERALS:
            stmt.mark(j, j + 1)
            return
        if _is_punct(token, "("):
            stmt.mark(j, stmt.closing.get(j, len(tokens)))
            return
        if token.kind == _WORD and j + 1 < len(tokens) and _is_punct(tokens[j + 1], "("):
            stmt.mark(j + 1, stmt.closing.get(j + 1, len(tokens)))
            return
        if _is_punct(token, "-") or _is_punct(token, "+") or (token.kind == _WORD and (
            token.text in _TYPED_LITERAL_PREFIXES
        )):
            j += 1
            continue
        return


def _operand_before(stmt: _Statement, k: int) -> None:
    token = stmt.tokens[k]
    if token.kind in _LITERALS:
        stmt.mark(k, k + 1)
    elif _is_punct(token, ")") and k in stmt.opening:
        stmt.mark(stmt.opening[k], k)


def _insert_values(stmt: _Statement) -> None:
    """Positional literals of sensitive columns in ``INSERT INTO t (cols) VALUES …`` /
    ``… SELECT …`` (also ``REPLACE INTO`` and ``MERGE``'s ``INSERT (cols) VALUES``)."""
    tokens = stmt.tokens
    n = len(tokens)
    i = 0
    while i < n:
        token = tokens[i]
        i += 1
        if token.kind != _WORD or token.text not in ("INSERT", "REPLACE"):
            continue
        # the column list: "(" within the next few tokens (INTO "schema"."table" ()
        j = i
        while j < n and j - i < 12 and not _is_punct(tokens[j], "(") and (
            tokens[j].text not in ("VALUES", "SELECT", "DEFAULT", ";")
        ):
            j += 1
        if j >= n or not _is_punct(tokens[j], "(") or j not in stmt.closing:
            continue
        columns = _comma_groups(stmt, j)
        sensitive = {p for p, (a, b) in enumerate(columns)
                     if b > a and _is_sensitive_token(tokens[b - 1])}
        j = stmt.closing[j] + 1
        i = j
        if not sensitive:
            continue
        if j < n and tokens[j].kind == _WORD and tokens[j].text in ("VALUES", "VALUE"):
            j += 1
            while j < n and _is_punct(tokens[j], "(") and j in stmt.closing:
                row = _comma_groups(stmt, j)
                for p in sensitive:
                    if p < len(row):
                        stmt.mark(*row[p])
                j = stmt.closing[j] + 1
                if j < n and _is_punct(tokens[j], ","):
                    j += 1
            i = j
        elif j < n and tokens[j].kind == _WORD and tokens[j].text == "SELECT":
            items, i = _select_list(stmt, j + 1)
            for p in sensitive:
                if p < len(items):
                    stmt.mark(*items[p])


def _comma_groups(stmt: _Statement, open_index: int) -> list[tuple[int, int]]:
    """Token ranges of the top-level comma-separated groups inside the parentheses
    opening at ``open_index``."""
    close = stmt.closing[open_index]
    groups: list[tuple[int, int]] = []
    start = j = open_index + 1
    while j < close:
        if _is_punct(stmt.tokens[j], "(") and j in stmt.closing:
            j = stmt.closing[j] + 1
            continue
        if _is_punct(stmt.tokens[j], ","):
            groups.append((start, j))
            start = j + 1
        j += 1
    groups.append((start, close))
    return groups


def _select_list(stmt: _Statement, j: int) -> tuple[list[tuple[int, int]], int]:
    tokens = stmt.tokens
    items: list[tuple[int, int]] = []
    start = j
    while j < len(tokens):
        token = tokens[j]
        if (token.kind in (_WORD, _PUNCT) and token.text in _CLAUSE_ENDS) or _is_punct(token, ")"):
            break
        if _is_punct(token, "(") and j in stmt.closing:
            j = stmt.closing[j] + 1
            continue
        if _is_punct(token, ","):
            items.append((start, j))
            start = j + 1
        j += 1
    items.append((start, j))
    return items, j
