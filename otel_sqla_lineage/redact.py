"""SQL text without the literals that sit next to password/secret/token columns.

Bound parameters keep values out of most SQL; what remains is SQL written with literals
(``text("UPDATE accounts SET api_token = 'abc'")``, other languages' instrumentations,
error messages that quote the statement). :func:`redact_sql` replaces those literals with
``'***'`` and leaves every other character as it was, so table lineage parses the same.

The rule (README, "Secrets"): a column is sensitive when its name, lower-cased and without
``_``/``-``, contains one of :data:`SENSITIVE_NAME_PARTS`; so is a JSON key written as a
string after ``->``, ``->>``, ``#>`` or ``#>>`` (``settings->>'api_token'``). A literal is
redacted when it is

* the value of a sensitive column in ``INSERT INTO t (cols) VALUES (...), (...)`` or
  ``INSERT INTO t (cols) SELECT ...`` (by position), or in a row value ``(a, col) = (x, y)``
  / ``= ROW(…)`` / ``= (SELECT …)`` (``SET (a, col) = …`` too; by position);
* in the operand after ``sensitive_col <op>`` (``=``, ``<>``, ``~``, ``@>``, ``LIKE``,
  ``IN``, ``= ANY``, ``IS NOT DISTINCT FROM``, ``BETWEEN … AND …``, … and ``SET col = …``;
  :data:`_COMPARISONS`): every literal up to the next ``,``, ``)``, ``;``, ``AND``/``OR``
  or clause keyword (:data:`_EXPRESSION_ENDS`) at the operand's own parenthesis level, so
  ``'a' || 'x'``, ``crypt('x', gen_salt('bf'))`` and ``CASE WHEN … THEN 'x' END`` lose
  all of theirs. The column may be wrapped: ``::type``, ``->'key'``, ``[1]``, ``CAST(col
  AS type)`` and the call or parenthesis around it (``lower(col)``, ``coalesce(col,
  'x')``, ``(col)``, ``substring(col FROM 1)``) are stepped over;
* in each WHEN value of ``CASE col WHEN … THEN``;
* in the operand before ``<op> sensitive_col`` (``'a' || 'x' = lower(secret)``), back to
  the previous such boundary;
* the value after a sensitive keyword with no operator (``PASSWORD 'x'`` in ``ALTER
  ROLE``) or after ``IDENTIFIED BY``.

String literals are ``'…'`` (``''`` escaped; backslash escapes for MySQL and ``E'…'``),
``$$…$$``/``$tag$…$tag$`` (PostgreSQL) and numbers; identifiers may be quoted with
``"…"``, backticks or ``[…]`` (``ARRAY[…]`` and subscripts excepted). Results are cached
per SQL string, and SQL with no quote, dollar sign or sensitive word returns at once: the
per-statement cost is a cache look-up.
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
    text: str  # upper-cased words, unquoted identifiers, the punctuation itself, strings
    # and numbers as written
    start: int
    end: int


_WORD_CHARS = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PLACEHOLDER_RE = re.compile(r"\$\d+|%\([A-Za-z_][A-Za-z0-9_]*\)s|%s|\?|:[A-Za-z_]\w*")
_OPERATOR_RE = re.compile(  # longest first
    r"<=>|->>|#>>|!~\*|<>|!=|<=|>=|==|::|\|\||->|#>|!~|~\*|@>|<@|&&")


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
            yield _Token(_STRING, sql[i:j], i, j)
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
        elif c == "[" and _opens_array(sql, i):
            yield _Token(_PUNCT, c, i, i + 1)
            i += 1
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
            m = _OPERATOR_RE.match(sql, i)
            op = m.group(0) if m else c
            yield _Token(_PUNCT, op, i, i + len(op))
            i += len(op)


def _opens_array(sql: str, i: int) -> bool:
    """The ``[`` at ``i`` opens PostgreSQL's ``ARRAY['a', 'b']`` or a subscript (``tags[1]``,
    ``f(x)[1]``), not a bracket-quoted identifier (``[Token]``)."""
    if i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_)]"):
        return True
    k = i
    while k > 0 and sql[k - 1].isspace():
        k -= 1
    return k >= 5 and sql[k - 5:k].upper() == "ARRAY" and (
        k == 5 or not (sql[k - 6].isalnum() or sql[k - 6] == "_"))


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
                          "IN", "IS", "NOT", "REGEXP", "RLIKE", "GLOB", "SIMILAR", "TO", ":=",
                          "BETWEEN", "SYMMETRIC", "DISTINCT", "ANY", "ALL", "SOME",
                          "~", "~*", "!~", "!~*", "@>", "<@", "&&"})  # + FROM after DISTINCT
_TYPED_LITERAL_PREFIXES = frozenset({"E", "N", "B", "X", "DATE", "TIME", "TIMESTAMP",
                                     "INTERVAL", "BINARY", "_UTF8MB4", "_UTF8"})
_CLAUSE_ENDS = frozenset({"FROM", "WHERE", "RETURNING", "ON", "UNION", "EXCEPT", "INTERSECT",
                          "GROUP", "ORDER", "LIMIT", "HAVING", "WINDOW", "INTO", ";"})
# where the operand of a comparison ends (at its own parenthesis level): README, "Secrets"
_EXPRESSION_ENDS = _CLAUSE_ENDS | frozenset({
    "AND", "OR", "OFFSET", "FETCH", "FOR", "USING", "JOIN", "LEFT", "RIGHT", "INNER", "FULL",
    "CROSS", "NATURAL", "WHEN", "THEN", "ELSE", "END", "SET", "VALUES", "SELECT", "DO", ",", ")",
})
_JSON_KEY_OPERATORS = frozenset({"->", "->>", "#>", "#>>"})
# a word before "(" that makes it a plain parenthesis (a row value), not a function call
_NOT_CALLS = _EXPRESSION_ENDS | _COMPARISONS | frozenset({"ROW", "BY", "EXISTS"})
_CASTS = frozenset({"CAST", "TRY_CAST", "SAFE_CAST"})
# keywords between a call's arguments: substring(col FROM 1 FOR 3), overlay(col PLACING …),
# convert(col USING utf8mb4)
_ARGUMENT_KEYWORDS = frozenset({"FROM", "FOR", "PLACING", "USING"})
_MAX_WRAPPERS: Final = 8
_DIRECT_WALK: Final = 48


def _is_sensitive_token(token: _Token) -> bool:
    return token.kind in (_WORD, _QUOTED_IDENT) and is_sensitive_name(token.text)


def _is_punct(token: _Token, text: str) -> bool:
    return token.kind == _PUNCT and token.text == text


def _is_word(token: _Token, text: str) -> bool:
    return token.kind == _WORD and token.text == text


def _ends_expression(token: _Token) -> bool:
    return token.kind in (_WORD, _PUNCT) and token.text in _EXPRESSION_ENDS


class _Statement:
    """Tokens with their parentheses (and ``CASE … END``) matched once, so each rule is
    linear in the tokens."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.closing: dict[int, int] = {}
        self.opening: dict[int, int] = {}
        self.case_end: dict[int, int] = {}
        self.case_start: dict[int, int] = {}
        stack: list[int] = []
        cases: list[int] = []
        for i, token in enumerate(tokens):
            kind, text = token.kind, token.text
            if kind == _PUNCT:
                if text == "(":
                    stack.append(i)
                elif text == ")" and stack:
                    j = stack.pop()
                    self.closing[j] = i
                    self.opening[i] = j
            elif kind == _WORD:
                if text == "CASE":
                    cases.append(i)
                elif text == "END" and cases:
                    j = cases.pop()
                    self.case_end[j] = i
                    self.case_start[i] = j
        # index ranges [a, b) whose literals are redacted
        self.ranges: list[tuple[int, int]] = []
        self._next_end: list[int] | None = None
        self._previous_end: list[int] | None = None

    def mark(self, start: int, end: int) -> None:
        if start < end:
            self.ranges.append((start, end))

    def expression_end(self, j: int) -> int:
        """The first index from ``j`` on, at ``j``'s parenthesis level, that ends an
        operand (:data:`_EXPRESSION_ENDS`); parenthesised groups and ``CASE … END`` are
        stepped over whole. Walked directly for short operands; past a few dozen tokens,
        computed for all indexes at once (so many columns in one long operand stay linear)."""
        if self._next_end is None:
            found = self._walk_to_end(j)
            if found is not None:
                return found

            tokens, n = self.tokens, len(self.tokens)
            after = [n] * (n + 1)
            for i in range(n - 1, -1, -1):
                kind, text = tokens[i].kind, tokens[i].text
                if kind == _PUNCT and text == "(":
                    close = self.closing.get(i)
                    after[i] = n if close is None else after[close + 1]
                elif kind == _WORD and i in self.case_end:
                    after[i] = after[self.case_end[i] + 1]
                elif kind in (_WORD, _PUNCT) and text in _EXPRESSION_ENDS:
                    after[i] = i
                else:
                    after[i] = after[i + 1]
            self._next_end = after
        return self._next_end[j]

    def _walk_to_end(self, j: int) -> int | None:
        tokens, n = self.tokens, len(self.tokens)
        for _ in range(_DIRECT_WALK):
            if j >= n:
                return n
            kind, text = tokens[j].kind, tokens[j].text
            if kind == _PUNCT and text == "(":
                close = self.closing.get(j)
                if close is None:
                    return n
                j = close + 1
            elif kind == _WORD and j in self.case_end:
                j = self.case_end[j] + 1
            elif kind in (_WORD, _PUNCT) and text in _EXPRESSION_ENDS:
                return j
            else:
                j += 1
        return None

    def _walk_to_start(self, k: int) -> int | None:
        tokens = self.tokens
        for _ in range(_DIRECT_WALK):
            if k < 0:
                return 0
            kind, text = tokens[k].kind, tokens[k].text
            if k in self.opening:
                k = self.opening[k] - 1
            elif k in self.case_start:
                k = self.case_start[k] - 1
            elif kind in (_WORD, _PUNCT) and (text == "(" or text in _EXPRESSION_ENDS):
                return k + 1
            else:
                k -= 1
        return None

    def expression_start(self, k: int) -> int:
        """The first index of the operand that ends at ``k`` (the mirror image of
        :meth:`expression_end`; an unmatched ``(`` ends it too)."""
        if self._previous_end is None:
            found = self._walk_to_start(k)
            if found is not None:
                return found

            before: list[int] = []
            for i, token in enumerate(self.tokens):
                kind, text = token.kind, token.text
                if i in self.opening:
                    o = self.opening[i]
                    before.append(before[o - 1] if o > 0 else -1)
                elif i in self.case_start:
                    c = self.case_start[i]
                    before.append(before[c - 1] if c > 0 else -1)
                elif kind in (_WORD, _PUNCT) and (text == "(" or text in _EXPRESSION_ENDS):
                    before.append(i)
                else:
                    before.append(before[i - 1] if i > 0 else -1)
            self._previous_end = before
        return self._previous_end[k] + 1

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
    _row_values(stmt)
    n = len(tokens)
    for i, token in enumerate(tokens):
        if _is_sensitive_token(token):
            if i + 1 < n and _is_punct(tokens[i + 1], "."):
                continue  # a table or schema named "secrets": its columns decide
            first = i - 2 if i >= 2 and _is_punct(tokens[i - 1], ".") else i  # table.col
            _column_operands(stmt, i, first)
        elif token.kind == _STRING and i > 0 and tokens[i - 1].kind == _PUNCT and (
            tokens[i - 1].text in _JSON_KEY_OPERATORS
        ) and is_sensitive_name(token.text.strip("'")):
            # settings->>'api_token': the key names the value, as a column name does
            _column_operands(stmt, i, _json_base_start(stmt, i - 1))
        elif _is_word(token, "IDENTIFIED"):
            j = i + 1
            if j < n and tokens[j].text == "BY":
                j += 1
                if j < n and tokens[j].text == "PASSWORD":
                    j += 1
                _operand(stmt, j)
    return stmt.marked_literals()


def _column_operands(stmt: _Statement, i: int, first: int) -> None:
    """Mark the operands compared with the sensitive column at ``i`` (its first token at
    ``first``): ``col <op> …`` up to where the operand ends, ``… <op> col`` back to where
    it starts, and ``PASSWORD 'x'`` (no operator; row values: :func:`_row_values`)."""
    tokens = stmt.tokens
    after, before = _wrapped(stmt, i, first)
    if before >= 0 and _is_word(tokens[before], "CASE") and before in stmt.case_end:
        _simple_case_values(stmt, before, after)
    j, between = _past_operator(tokens, after)
    if j > after:
        end = stmt.expression_end(j)
        if between and end < len(tokens) and _is_word(tokens[end], "AND"):
            end = stmt.expression_end(end + 1)  # BETWEEN a AND b: both bounds
        stmt.mark(j, end)
    else:
        _operand(stmt, i + 1)
    # operand <op> col
    k, ops = before, 0
    while k >= 0 and ops < 5 and _is_operator(tokens, k):
        k -= 1
        ops += 1
    if ops and k >= 0:
        stmt.mark(stmt.expression_start(k), k + 1)


def _simple_case_values(stmt: _Statement, case: int, j: int) -> None:
    """``CASE col WHEN 'x' THEN … WHEN 'y' THEN …``: each WHEN value is compared with the
    column (``j``: after it); nested parentheses and CASEs are stepped over whole."""
    tokens, end = stmt.tokens, stmt.case_end[case]
    while j < end:
        token = tokens[j]
        if _is_punct(token, "(") and j in stmt.closing:
            j = stmt.closing[j] + 1
        elif token.kind == _WORD and j in stmt.case_end:
            j = stmt.case_end[j] + 1
        elif _is_word(token, "WHEN"):
            then = stmt.expression_end(j + 1)  # THEN ends the value
            stmt.mark(j + 1, then)
            j = max(then, j + 1)
        else:
            j += 1


def _is_operator(tokens: list[_Token], k: int) -> bool:
    token = tokens[k]
    if token.kind not in (_PUNCT, _WORD):
        return False
    return token.text in _COMPARISONS or (
        token.text == "FROM" and k > 0 and _is_word(tokens[k - 1], "DISTINCT"))


def _past_operator(tokens: list[_Token], k: int) -> tuple[int, bool]:
    """Index after the comparison operator at ``k`` (``=``, ``NOT LIKE``, ``IS NOT DISTINCT
    FROM``, …; ``k`` when there is none) and whether it is ``BETWEEN``."""
    j, between = k, False
    while j < len(tokens) and j - k < 5 and _is_operator(tokens, j):
        between = between or tokens[j].text == "BETWEEN"
        j += 1
    return j, between


def _wrapped(stmt: _Statement, i: int, first: int) -> tuple[int, int]:
    """Step over what wraps the column at ``i`` (its first token at ``first``): ``::type``,
    ``->'key'``, ``[1]``, ``CAST(col AS type)``, the closing ``)`` of ``lower(col)``, ``(col)`` or
    ``coalesce(col, …)``. Returns the index after it and the index before it. A row value
    ``(a, col)`` is not stepped over (:func:`_row_values` reads it by position)."""
    tokens, n = stmt.tokens, len(stmt.tokens)
    after, start = i + 1, first
    for _ in range(_MAX_WRAPPERS):
        if after >= n:
            break
        token = tokens[after]
        if _is_punct(token, "::"):
            after = _past_type(stmt, after + 1)
        elif token.kind == _PUNCT and token.text in _JSON_KEY_OPERATORS and after + 1 < n:
            after += 2
        elif _is_punct(token, "["):  # a subscript: tokens[1], tags[1:2]
            close = next((k for k in range(after + 1, min(after + _MAX_WRAPPERS, n))
                          if _is_punct(tokens[k], "]")), None)
            if close is None:
                break
            after = close + 1
        elif _is_word(token, "AS") and start >= 2 and _is_punct(tokens[start - 1], "(") and (
            tokens[start - 2].kind == _WORD and tokens[start - 2].text in _CASTS
        ):
            after = _past_type(stmt, after + 1)
        elif token.kind == _WORD and token.text in _ARGUMENT_KEYWORDS and start >= 1 and (
            start - 1 in stmt.closing and _is_call(tokens, start - 1)
        ):
            after = stmt.closing[start - 1]  # substring(col FROM 1): the call's ")" is next
        elif _is_punct(token, ")") and after in stmt.opening:
            o = stmt.opening[after]
            call = _is_call(tokens, o)
            if not call and len(_comma_groups(stmt, o)) > 1:
                break
            start = o - 1 if call else o
            after += 1
        elif _is_punct(token, ",") and (close := _call_close(stmt, after)) is not None:
            after = close  # coalesce(col, 'x'): the call's ")" is next
        else:
            break
    return after, start - 1


def _call_close(stmt: _Statement, comma: int) -> int | None:
    """The ``)`` closing the function call whose argument list holds the ``,`` at
    ``comma`` (None: not in a call's arguments, or too many of them)."""
    tokens, n = stmt.tokens, len(stmt.tokens)
    j = comma
    for _ in range(_MAX_WRAPPERS):
        end = stmt.expression_end(j + 1)
        if end >= n:
            return None
        if _is_punct(tokens[end], ")"):
            return end if end in stmt.opening and _is_call(tokens, stmt.opening[end]) else None
        if not _is_punct(tokens[end], ","):
            return None
        j = end
    return None


def _is_call(tokens: list[_Token], open_index: int) -> bool:
    """The ``(`` at ``open_index`` opens a function's arguments (``lower(``), not a row value
    or a plain parenthesis (``SET (``, ``= (``)."""
    if open_index == 0:
        return False
    name = tokens[open_index - 1]
    return name.kind == _QUOTED_IDENT or (name.kind == _WORD and name.text not in _NOT_CALLS)


def _row_values(stmt: _Statement) -> None:
    """``(a, col) = (x, y)`` / ``= ROW(x, y)`` / ``= (SELECT x, y …)`` (also ``SET (a, col)
    = …``): the value at a sensitive column's position; any other right-hand side (``IN``,
    a subquery name…) loses every literal."""
    tokens, n = stmt.tokens, len(stmt.tokens)
    for open_index, close in stmt.closing.items():
        j, between = _past_operator(tokens, close + 1)
        if j == close + 1 or _is_call(tokens, open_index):
            continue
        columns = _comma_groups(stmt, open_index)
        sensitive = [p for p, (a, b) in enumerate(columns)
                     if b > a and _is_sensitive_token(tokens[b - 1])]
        if len(columns) < 2 or not sensitive:
            continue
        if j < n and _is_word(tokens[j], "ROW") and j + 1 < n and _is_punct(tokens[j + 1], "("):
            j += 1
        if not (between or _is_word(tokens[j - 1], "IN")) and j < n and (
            _is_punct(tokens[j], "(") and j in stmt.closing
        ):
            if j + 1 < n and _is_word(tokens[j + 1], "SELECT"):
                items, _ = _select_list(stmt, j + 2)
            else:
                items = _comma_groups(stmt, j)
            if len(items) == len(columns):
                for p in sensitive:
                    stmt.mark(*items[p])
                continue
        end = stmt.expression_end(j)
        if between and end < n and _is_word(tokens[end], "AND"):
            end = stmt.expression_end(end + 1)
        stmt.mark(j, end)


def _past_type(stmt: _Statement, j: int) -> int:
    """Index after a type name: ``text``, ``character varying(20)``, ``pg_catalog.int4``,
    ``text[]``."""
    tokens, n = stmt.tokens, len(stmt.tokens)
    for _ in range(_MAX_WRAPPERS):
        if j >= n:
            break
        token = tokens[j]
        type_word = token.kind == _WORD and token.text not in _COMPARISONS and (
            token.text not in _EXPRESSION_ENDS and token.text != "AS")
        if type_word or token.kind == _QUOTED_IDENT or _is_punct(token, "."):
            j += 1  # ("[]" lexes as an empty bracket-quoted identifier)
        elif _is_punct(token, "(") and j in stmt.closing:
            j = stmt.closing[j] + 1
        else:
            break
    return j


def _json_base_start(stmt: _Statement, k: int) -> int:
    """The first token of ``t.settings->'a'`` given the index of the ``->`` before the key."""
    tokens = stmt.tokens
    j = k - 1
    for _ in range(_MAX_WRAPPERS):
        if j < 0:
            return 0
        if _is_punct(tokens[j], ")") and j in stmt.opening:
            j = stmt.opening[j]
            if j > 0 and tokens[j - 1].kind in (_WORD, _QUOTED_IDENT):
                j -= 1
        if j >= 2 and _is_punct(tokens[j - 1], "."):
            j -= 2
        if j >= 2 and tokens[j - 1].kind == _PUNCT and tokens[j - 1].text in _JSON_KEY_OPERATORS:
            j -= 2
            continue
        return j
    return max(j, 0)


def _operand(stmt: _Statement, j: int) -> None:
    """The literals of the value at ``j`` after a keyword with no operator (``PASSWORD 'x'``,
    ``IDENTIFIED BY 'x'``): a literal, a parenthesised list or a function call (every
    literal inside), optionally signed or typed (``DATE '…'``)."""
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
