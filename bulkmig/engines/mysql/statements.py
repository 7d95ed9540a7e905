"""What a statement in a MySQL/MariaDB binlog (a QUERY event) means for the captured tables.

:func:`classify` reads a query event's statement: transaction control, TRUNCATE, the one ALTER
TABLE replay applies (``ADD COLUMN`` of a nullable column at the end), changes that touch no rows
(indexes, comments, views, grants), and everything else, which stops capture when it names a captured
table.  Statement-based DML (a session that set ``binlog_format=STATEMENT``) stops it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QNAME = rf"({_IDENT})(?:\s*\.\s*({_IDENT}))?"
# Strings and quoted names are kept; comments go, except MySQL's executable ones (/*!40000 … */), unwrapped.
_COMMENTS = re.compile(
    r"('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`]|``)*`)|/\*M?!\d*(.*?)\*/|/\*.*?\*/|--[^\n]*\n?|#[^\n]*\n?",
    re.S,
)
_TOKEN = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|\(|\)|,|[^\s(),`'\"]+", re.S)
_OBJECT_KINDS = frozenset(
    {
        "TABLE",
        "INDEX",
        "VIEW",
        "PROCEDURE",
        "FUNCTION",
        "TRIGGER",
        "EVENT",
        "DATABASE",
        "SCHEMA",
        "USER",
        "ROLE",
        "SERVER",
        "SEQUENCE",
        "PACKAGE",
        "TABLESPACE",
        "LOGFILE",
        "SPATIAL",
        "FULLTEXT",
    }
)
_HARMLESS_OBJECTS = frozenset({"VIEW", "PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "USER", "ROLE", "SERVER"})
_HARMLESS_VERBS = frozenset(
    {"GRANT", "REVOKE", "FLUSH", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK", "SET", "INSTALL", "UNINSTALL"}
)
_DML_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "CALL", "DO", "HANDLER"})
# ALTER TABLE actions that change neither the columns nor the rows: nothing for replay to do.
_NO_ROW_ACTIONS = re.compile(
    r"^(?:ADD\s+(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?(?:INDEX|KEY)\b|ADD\s+(?:CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY\b|"
    r"DROP\s+(?:INDEX|KEY|FOREIGN\s+KEY|CONSTRAINT)\b|RENAME\s+(?:INDEX|KEY)\b|COMMENT\b|AUTO_INCREMENT\b|"
    r"(?:DISABLE|ENABLE)\s+KEYS\b|ALGORITHM\b|LOCK\b|FORCE\b|ENGINE\b|ROW_FORMAT\b|KEY_BLOCK_SIZE\b|STATS_\w+\b|ALTER\s+(?:INDEX|KEY)\b)",
    re.I,
)
_COLUMN_ATTRS = re.compile(
    r"^(?:NULL|COMMENT\s+'(?:[^'\\]|\\.|'')*'|(?:CHARACTER\s+SET|CHARSET)\s+\w+|COLLATE\s+\w+|"
    r"DEFAULT\s+NULL|DEFAULT\s+(-?\d+(?:\.\d+)?|'(?:[^'\\]|\\.|'')*'))$",
    re.I | re.S,
)


def _unquote_ident(text: str) -> str:
    return text[1:-1].replace("``", "`") if text.startswith("`") else text


def mysql_string(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(
        r"''|\\(.)",
        lambda m: "'" if m.group(0) == "''" else {"n": "\n", "t": "\t", "0": "\0"}.get(m.group(1), m.group(1)),
        body,
    )


def _split_top(text: str) -> list[str]:
    """Comma-separated clauses at nesting depth 0 (quotes and parentheses respected)."""
    out, depth, start = [], 0, 0
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif tok == "," and depth == 0:
            out.append(text[start : m.start()].strip())
            start = m.end()
    out.append(text[start:].strip())
    return [c for c in out if c]


@dataclass
class Statement:
    """What a binlog query event means for capture."""

    kind: str  # begin | commit | rollback | savepoint | xa | ignore | truncate | add_column | stop
    tables: list[tuple[str, str]] = field(default_factory=list)  # (schema, table) named by it
    text: str = ""
    column: str | None = None  # add_column: the column and its definition
    column_type: str | None = None
    charset: str | None = None
    default: str | None = None  # MySQL literal text ("5", "'abc'"), None = none / NULL
    why: str = ""


def classify(sql: str, default_schema: str) -> Statement:
    """Read one query event's statement: transaction control, DDL (with the tables it names), or DML."""
    # Nearly every query event of a row binlog is a bare BEGIN (or COMMIT, non-transactional tables):
    # answer those before the comment-stripping regex, with what the general path gives them.
    if sql == "BEGIN":
        return Statement("begin", text=sql)
    if sql == "COMMIT":
        return Statement("commit", text=sql)
    text = _COMMENTS.sub(lambda m: m.group(1) or f" {m.group(2) or ''} ", sql).strip().rstrip(";").strip()
    words = text.split(None, 3)
    verb = words[0].upper() if words else ""
    upper = text.upper()
    if verb in ("BEGIN",) or upper.startswith("START TRANSACTION"):
        return Statement("begin", text=text)
    if verb == "COMMIT":
        return Statement("commit", text=text)
    if upper == "ROLLBACK" or upper.startswith("ROLLBACK WORK"):
        return Statement("rollback", text=text)
    if verb in ("SAVEPOINT", "RELEASE") or upper.startswith("ROLLBACK TO"):
        return Statement("savepoint", text=text)
    if verb == "XA":
        return Statement("xa", text=text, why="XA transactions are not supported by capture")

    def name(m: re.Match[str], first: int) -> tuple[str, str]:
        a, b = m.group(first), m.group(first + 1)
        return (_unquote_ident(a), _unquote_ident(b)) if b else (default_schema, _unquote_ident(a))

    if verb == "TRUNCATE":
        m = re.match(rf"TRUNCATE\s+(?:TABLE\s+)?{_QNAME}\s*$", text, re.I)
        if m:
            return Statement("truncate", [name(m, 1)], text)
        return Statement("stop", text=text, why="a TRUNCATE capture cannot read")
    if verb in _DML_VERBS:
        return Statement("dml", text=text, why="a statement-based change (binlog_format is not ROW for that session)")
    if verb in _HARMLESS_VERBS:
        return Statement("ignore", text=text)
    if verb == "RENAME":
        if len(words) > 1 and words[1].upper() in ("USER",):
            return Statement("ignore", text=text)
        pairs = re.findall(rf"{_QNAME}\s+TO\s+{_QNAME}", text, re.I)
        tables = [
            (_unquote_ident(b), _unquote_ident(a)) if b else (default_schema, _unquote_ident(a))
            for a, b, _c, _d in pairs
        ]
        return Statement("stop", tables, text, why="renaming a captured table")
    if verb not in ("CREATE", "ALTER", "DROP"):
        return Statement("stop", text=text, why="a statement capture does not know")
    tokens = [t.upper() for t in text.split()[1:8]]
    kind = next((t for t in tokens if t in _OBJECT_KINDS), "")
    if kind in _HARMLESS_OBJECTS:
        return Statement("ignore", text=text)
    if kind in ("DATABASE", "SCHEMA"):
        m = re.match(rf"\w+\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_IDENT})", text, re.I)
        db = _unquote_ident(m.group(1)) if m else default_schema
        if verb == "DROP":
            return Statement("drop_schema", [(db, "*")], text, why="dropping a captured database")
        return Statement("ignore", text=text)
    if kind in ("INDEX", "SPATIAL", "FULLTEXT"):
        m = re.search(rf"\bON\s+{_QNAME}", text, re.I)
        return Statement("ignore", [name(m, 1)] if m else [], text)
    if kind != "TABLE":
        return Statement("ignore" if kind in ("SEQUENCE", "PACKAGE") else "stop", text=text, why="unknown DDL")
    if verb == "DROP":
        m = re.match(
            r"DROP\s+(TEMPORARY\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?(.*?)(?:\s+(?:RESTRICT|CASCADE))?$", text, re.I | re.S
        )
        if m and m.group(1):
            return Statement("ignore", text=text)  # temporary tables are never captured
        found = re.findall(_QNAME, m.group(2)) if m else []
        tables = [
            (_unquote_ident(a), _unquote_ident(b)) if b else (default_schema, _unquote_ident(a)) for a, b in found
        ]
        return Statement("stop", tables, text, why="dropping a captured table")
    if verb == "CREATE":
        m = re.match(
            rf"CREATE\s+(?:OR\s+REPLACE\s+)?(TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QNAME}", text, re.I
        )
        if m and m.group(1):
            return Statement("ignore", text=text)
        replace = bool(re.match(r"CREATE\s+OR\s+REPLACE", text, re.I))
        return Statement(
            "create_table" if not replace else "stop", [name(m, 2)] if m else [], text, why="replacing a captured table"
        )
    m = re.match(rf"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?{_QNAME}\s*(.*)$", text, re.I | re.S)
    if not m:
        return Statement("stop", text=text, why="an ALTER TABLE capture cannot read")
    table = name(m, 1)
    actions = _split_top(m.group(3))
    if all(_NO_ROW_ACTIONS.match(a) for a in actions):
        return Statement("ignore", [table], text)
    if len(actions) == 1:
        added = _add_column(actions[0])
        if added is not None:
            return Statement("add_column", [table], text, *added)
    return Statement("stop", [table], text, why="a table change replay cannot apply safely")


def _add_column(action: str) -> tuple[str, str, str | None, str | None] | None:
    """(column, type, charset, default literal) for ``ADD [COLUMN] c <type> [NULL] [DEFAULT …]`` of a
    nullable column at the end of the table; None for anything else (FIRST/AFTER, NOT NULL, …)."""
    tokens = _TOKEN.findall(action)
    if not tokens or tokens[0].upper() != "ADD":
        return None
    i = 1
    if i < len(tokens) and tokens[i].upper() == "COLUMN":
        i += 1
    if tokens[i : i + 3] and [t.upper() for t in tokens[i : i + 3]] == ["IF", "NOT", "EXISTS"]:
        i += 3
    if i + 1 >= len(tokens) or tokens[i] == "(":
        return None
    column = _unquote_ident(tokens[i])
    name, args, mods = tokens[i + 1], "", []
    j = i + 2
    if j < len(tokens) and tokens[j] == "(":
        depth = 0
        while j < len(tokens):
            args += tokens[j]
            depth += {"(": 1, ")": -1}.get(tokens[j], 0)
            j += 1
            if depth == 0:
                break
    while j < len(tokens) and tokens[j].upper() in ("UNSIGNED", "SIGNED", "ZEROFILL"):
        mods.append(tokens[j].lower())
        j += 1
    column_type = " ".join([name.lower() + args, *mods])
    rest = " ".join(tokens[j:])
    charset, default = None, None
    for attr in re.findall(
        r"NULL|COMMENT\s+'(?:[^'\\]|\\.|'')*'|(?:CHARACTER\s+SET|CHARSET)\s+\w+|COLLATE\s+\w+|"
        r"DEFAULT\s+(?:'(?:[^'\\]|\\.|'')*'|\S+)|\S+",
        rest,
        re.I | re.S,
    ):
        m = _COLUMN_ATTRS.match(attr)
        if not m:
            return None  # NOT NULL, FIRST, AFTER, AUTO_INCREMENT, GENERATED, keys, ON UPDATE …
        upper = attr.upper()
        if upper.startswith(("CHARACTER", "CHARSET")):
            charset = attr.split()[-1]
        elif upper.startswith("DEFAULT") and m.group(1):
            default = m.group(1)
    return column, column_type, charset, default


__all__ = ["Statement", "classify", "mysql_string"]
