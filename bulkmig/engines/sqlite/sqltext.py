"""Just enough of SQLite's SQL to read what its catalog keeps only as text.

SQLite's PRAGMAs give columns, keys, indexes and foreign keys, but not CHECK constraints, generation
expressions, collations, AUTOINCREMENT, constraint names, a partial index's WHERE or an expression
index's expressions: those exist only in the CREATE statement ``sqlite_schema`` stores.  This module
tokenises that text (strings, the four identifier quotings, comments, nesting) and cuts it into the
pieces reflection needs, returning the original text of each piece, so what conversion translates is
exactly what the user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<str>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
  | (?P<word>[A-Za-z0-9_$\x80-\U0010ffff]+)
  | (?P<punct>.)
    """,
    re.X | re.S,
)


@dataclass(frozen=True)
class Token:
    kind: str  # str | ident | word | punct
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The identifier it spells, unquoted ("a""b" → a"b, [x] → x, 'x' → x, x → x)."""
        t = self.text
        if self.kind == "ident":
            if t[0] == "[":
                return t[1:-1]
            return t[1:-1].replace(t[0] * 2, t[0])
        if self.kind == "str":
            return t[1:-1].replace("''", "'")
        return t


def tokens(sql: str) -> list[Token]:
    """The significant tokens of ``sql`` (whitespace and comments dropped)."""
    out = []
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup or "punct"
        if kind in ("ws", "comment"):
            continue
        out.append(Token(kind, m.group(), m.start(), m.end()))
    return out


def _close(toks: list[Token], i: int) -> int:
    """Index of the ')' matching the '(' at ``toks[i]``."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(" and toks[j].kind == "punct":
            depth += 1
        elif toks[j].text == ")" and toks[j].kind == "punct":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def _split(toks: list[Token]) -> list[list[Token]]:
    """Split at commas outside parentheses."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.text == ",":
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def _text(sql: str, toks: list[Token]) -> str:
    return sql[toks[0].start : toks[-1].end] if toks else ""


def _inner(sql: str, toks: list[Token], i: int) -> tuple[str, int]:
    """The text inside the parentheses opening at ``toks[i]``, and the index after the closing one."""
    j = _close(toks, i)
    return _text(sql, toks[i + 1 : j]).strip(), j + 1


# ---------------------------------------------------------------------------------------- CREATE TABLE


@dataclass
class ColumnDef:
    name: str
    collation: str | None = None
    autoincrement: bool = False
    generated: str | None = None  # the expression
    generated_kind: str | None = None  # VIRTUAL | STORED


@dataclass
class Check:
    name: str | None
    clause: str
    column: str | None  # a column constraint's column


@dataclass
class KeyDef:
    name: str | None
    kind: str  # PRIMARY | UNIQUE
    columns: list[str]


@dataclass
class ForeignKeyDef:
    name: str | None
    columns: list[str]
    ref_table: str


@dataclass
class TableDef:
    columns: dict[str, ColumnDef] = field(default_factory=dict)  # by lower-case name
    checks: list[Check] = field(default_factory=list)
    keys: list[KeyDef] = field(default_factory=list)
    foreign_keys: list[ForeignKeyDef] = field(default_factory=list)
    without_rowid: bool = False
    strict: bool = False


_COLUMN_CONSTRAINTS = frozenset(
    {"CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES", "GENERATED", "AS"}
)
_TABLE_CONSTRAINTS = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})


def parse_create_table(sql: str) -> TableDef:
    """The parts of a CREATE TABLE that PRAGMAs do not show.  ``CREATE TABLE … AS SELECT`` has none."""
    toks = tokens(sql)
    out = TableDef()
    open_at = next((i for i, t in enumerate(toks) if t.kind == "punct" and t.text == "("), None)
    if open_at is None or any(t.upper == "AS" for t in toks[:open_at]):
        return out
    close_at = _close(toks, open_at)
    options = {t.upper for t in toks[close_at + 1 :]}
    out.without_rowid = "ROWID" in options and "WITHOUT" in options
    out.strict = "STRICT" in options
    for part in _split(toks[open_at + 1 : close_at]):
        if part[0].upper in _TABLE_CONSTRAINTS:
            _table_constraint(sql, part, out)
        else:
            _column_def(sql, part, out)
    return out


def _column_def(sql: str, part: list[Token], out: TableDef) -> None:
    col = ColumnDef(part[0].name)
    out.columns[col.name.lower()] = col
    i = 1
    while i < len(part) and part[i].upper not in _COLUMN_CONSTRAINTS:
        i = _close(part, i) + 1 if part[i].text == "(" and part[i].kind == "punct" else i + 1
    pending: str | None = None
    while i < len(part):
        word = part[i].upper
        if word == "CONSTRAINT" and i + 1 < len(part):
            pending, i = part[i + 1].name, i + 2
            continue
        if word == "CHECK" and i + 1 < len(part) and part[i + 1].text == "(":
            clause, i = _inner(sql, part, i + 1)
            out.checks.append(Check(pending, clause, col.name))
            pending = None
            continue
        if word in ("GENERATED", "AS"):
            j = i
            while j < len(part) and part[j].text != "(":
                j += 1
            if j < len(part):
                col.generated, i = _inner(sql, part, j)
                col.generated_kind = "STORED" if i < len(part) and part[i].upper == "STORED" else "VIRTUAL"
                pending = None
                continue
        if word == "COLLATE" and i + 1 < len(part):
            col.collation, i = part[i + 1].name, i + 2
            continue
        if word == "AUTOINCREMENT":
            col.autoincrement = True
        elif word == "REFERENCES" and i + 1 < len(part):
            out.foreign_keys.append(ForeignKeyDef(pending, [col.name], part[i + 1].name))
            pending = None
        elif word in ("PRIMARY", "UNIQUE"):
            out.keys.append(KeyDef(pending, word, [col.name]))
            pending = None
        elif word in ("NOT", "NULL", "DEFAULT"):
            pending = None
        if part[i].kind == "punct" and part[i].text == "(":
            i = _close(part, i) + 1
        else:
            i += 1


def _names(sql: str, part: list[Token], i: int) -> tuple[list[str], int]:
    """The column names of ``( a COLLATE x DESC, b )`` opening at ``part[i]`` (first token of each item)."""
    j = _close(part, i)
    return [item[0].name for item in _split(part[i + 1 : j])], j + 1


def _table_constraint(sql: str, part: list[Token], out: TableDef) -> None:
    name = None
    i = 0
    if part[0].upper == "CONSTRAINT" and len(part) > 1:
        name, i = part[1].name, 2
    if i >= len(part):
        return
    word = part[i].upper
    paren = next((j for j in range(i, len(part)) if part[j].text == "(" and part[j].kind == "punct"), None)
    if paren is None:
        return
    if word == "CHECK":
        clause, _ = _inner(sql, part, paren)
        out.checks.append(Check(name, clause, None))
    elif word in ("PRIMARY", "UNIQUE"):
        cols, _ = _names(sql, part, paren)
        out.keys.append(KeyDef(name, word, cols))
    elif word == "FOREIGN":
        cols, after = _names(sql, part, paren)
        if after + 1 < len(part) and part[after].upper == "REFERENCES":
            out.foreign_keys.append(ForeignKeyDef(name, cols, part[after + 1].name))


# -------------------------------------------------------------------------------- indexes, views, triggers


@dataclass
class IndexDef:
    parts: list[str]  # each key part's text without COLLATE/ASC/DESC: a column name or an expression
    where: str | None


def parse_create_index(sql: str) -> IndexDef:
    toks = tokens(sql)
    on = next(i for i, t in enumerate(toks) if t.upper == "ON")
    open_at = next(i for i in range(on, len(toks)) if toks[i].kind == "punct" and toks[i].text == "(")
    close_at = _close(toks, open_at)
    parts = []
    for item in _split(toks[open_at + 1 : close_at]):
        end = len(item)
        while end > 1 and item[end - 1].upper in ("ASC", "DESC"):
            end -= 1
        if end > 2 and item[end - 2].upper == "COLLATE":
            end -= 2
        parts.append(_text(sql, item[:end]))
    rest = toks[close_at + 1 :]
    where = _text(sql, rest[1:]).strip() if rest and rest[0].upper == "WHERE" else None
    return IndexDef(parts, where or None)


def view_select(sql: str) -> str:
    """The SELECT of a CREATE VIEW (after its top-level AS)."""
    toks = tokens(sql)
    depth = 0
    for i, t in enumerate(toks):
        if t.kind == "punct" and t.text in "()":
            depth += 1 if t.text == "(" else -1
        elif depth == 0 and t.upper == "AS":
            return sql[toks[i + 1].start :].strip() if i + 1 < len(toks) else ""
    return ""


def trigger_parts(sql: str) -> dict[str, str | list[str] | None]:
    """Timing, event, UPDATE OF columns, WHEN condition and body (BEGIN … END) of a CREATE TRIGGER."""
    toks = tokens(sql)
    begin = next((i for i, t in enumerate(toks) if t.upper == "BEGIN"), len(toks))
    head = toks[:begin]
    words = [t.upper for t in head]
    timing = "BEFORE"  # SQLite's default
    for w in ("BEFORE", "AFTER", "INSTEAD"):
        if w in words:
            timing = "INSTEAD OF" if w == "INSTEAD" else w
            break
    event = next((w for w in words if w in ("INSERT", "UPDATE", "DELETE")), "")
    columns: list[str] = []
    if event == "UPDATE":
        k = words.index("UPDATE")
        if k + 1 < len(head) and words[k + 1] == "OF":
            on = words.index("ON", k)
            columns = [t.name for t in head[k + 2 : on] if t.kind != "punct"]
    when = None
    if "WHEN" in words:
        k = words.index("WHEN")
        when = _text(sql, head[k + 1 :]).strip() or None
    body = sql[toks[begin].start :].strip() if begin < len(toks) else ""
    return {"timing": timing, "event": event, "columns": columns, "when": when, "body": body}


def using_module(sql: str) -> str | None:
    """The module of a CREATE VIRTUAL TABLE … USING module(…)."""
    toks = tokens(sql)
    for i, t in enumerate(toks[:-1]):
        if t.upper == "USING":
            return toks[i + 1].name.lower()
    return None
