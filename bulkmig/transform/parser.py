"""A parser for the SQLite expressions of DMS ``add-column`` rules, into a small tree.

Why our own rather than sqlglot: sqlglot rewrites what it reads towards a neutral form (``strftime`` becomes
a timestamp conversion, ``replace(...)`` falls back to an opaque command), while evaluating exactly as SQLite
does needs the expression as written.  The grammar is SQLite's expression grammar, restricted to what
:mod:`bulkmig.transform.expressions` evaluates, with SQLite's operator precedence (lowest first): OR, AND,
NOT, comparisons of equality (``= == != <> IS IN BETWEEN``), ordering (``< <= > >=``), ``+ -``, ``* / %``,
``||``, unary ``- +``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bulkmig.core.errors import ConfigError


@dataclass(frozen=True)
class Node:
    """One node: ``kind`` is lit | ref | call | unary | binary | case | cast | isnull | between | in."""

    kind: str
    value: object = None  # lit: the Python value; ref: the name after $; call/unary/binary: the operator
    args: tuple[Node, ...] = ()


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
    | (?P<str>'(?:[^']|'')*')
    | (?P<ref>\$[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<qid>"(?:[^"]|"")*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\|\||==|!=|<>|<=|>=|[-+*/%<>=(),])
    )""",
    re.VERBOSE,
)


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(
                f"{where}: cannot read the expression at {text[pos : pos + 20]!r}",
                "write a SQLite expression ($column references, literals, operators, functions)",
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.toks = _tokens(text, where)
        self.i = 0
        self.where = where
        self.text = text

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: {what} in expression {self.text!r}", "fix the rule's expression")

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def word(self, *words: str, ahead: int = 0) -> bool:
        kind, val = self.peek(ahead)
        return kind == "word" and val.upper() in words

    def op(self, *ops: str) -> bool:
        kind, val = self.peek()
        return kind == "op" and val in ops

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect_op(self, op: str) -> None:
        self._expect(self.op(op), repr(op))

    def expect_word(self, word: str) -> None:
        self._expect(self.word(word), word)

    def _expect(self, found: bool, what: str) -> None:
        """Step over the token that must come next, or fail naming ``what`` and the token found instead."""
        if not found:
            raise self.fail(f"expected {what}, found {self.peek()[1] or 'the end'!r}")
        self.i += 1

    def _left_assoc(self, operand: Callable[[], Node], at_operator: Callable[[], bool]) -> Node:
        """One precedence level of binary operators: ``operand (operator operand)*``, grouped from the left."""
        node = operand()
        while at_operator():
            node = Node("binary", self.take()[1].upper(), (node, operand()))  # a word operator as OR, AND
        return node

    def _comma_list(self) -> list[Node]:
        """``expr (, expr)*``: an IN list's items or a function's arguments."""
        items = [self.or_()]
        while self.op(","):
            self.take()
            items.append(self.or_())
        return items

    # -------------------------------------------------------------------------------- precedence levels

    def parse(self) -> Node:
        node = self.or_()
        if self.peek()[0] != "eof":
            raise self.fail(f"unexpected {self.peek()[1]!r}")
        return node

    def or_(self) -> Node:
        return self._left_assoc(self.and_, lambda: self.word("OR"))

    def and_(self) -> Node:
        return self._left_assoc(self.not_, lambda: self.word("AND"))

    def not_(self) -> Node:
        if self.word("NOT"):
            self.take()
            return Node("unary", "NOT", (self.not_(),))
        return self.equality()

    def equality(self) -> Node:
        node = self.ordering()
        while True:
            if self.op("=", "==", "!=", "<>"):
                op = self.take()[1]
                node = Node("binary", {"==": "=", "<>": "!="}.get(op, op), (node, self.ordering()))
            elif self.word("IS"):
                self.take()
                negate = self.word("NOT")
                if negate:
                    self.take()
                self.expect_word("NULL")
                node = Node("isnull", not negate, (node,))
            elif self.word("ISNULL", "NOTNULL"):
                node = Node("isnull", self.take()[1].upper() == "ISNULL", (node,))
            elif self.word("NOT") and self.word("NULL", ahead=1):
                self.i += 2
                node = Node("isnull", False, (node,))
            elif self.word("BETWEEN") or (self.word("NOT") and self.word("BETWEEN", ahead=1)):
                negate = self.word("NOT")
                self.i += 2 if negate else 1
                low = self.ordering()
                self.expect_word("AND")
                node = Node("between", negate, (node, low, self.ordering()))
            elif self.word("IN") or (self.word("NOT") and self.word("IN", ahead=1)):
                negate = self.word("NOT")
                self.i += 2 if negate else 1
                self.expect_op("(")
                items = self._comma_list()
                self.expect_op(")")
                node = Node("in", negate, (node, *items))
            else:
                return node

    def ordering(self) -> Node:
        return self._left_assoc(self.additive, lambda: self.op("<", "<=", ">", ">="))

    def additive(self) -> Node:
        return self._left_assoc(self.multiplicative, lambda: self.op("+", "-"))

    def multiplicative(self) -> Node:
        return self._left_assoc(self.concat, lambda: self.op("*", "/", "%"))

    def concat(self) -> Node:
        return self._left_assoc(self.unary, lambda: self.op("||"))

    def unary(self) -> Node:
        if self.op("-", "+"):
            op = self.take()[1]
            inner = self.unary()
            if op == "+":
                return inner
            if inner.kind == "lit" and isinstance(inner.value, int | float) and not isinstance(inner.value, bool):
                return Node("lit", -inner.value)
            return Node("unary", "-", (inner,))
        return self.primary()

    def primary(self) -> Node:
        kind, val = self.take()
        if kind == "num":
            is_real = any(ch in val for ch in ".eE")
            return Node("lit", float(val) if is_real else int(val))
        if kind == "str":
            return Node("lit", val[1:-1].replace("''", "'"))
        if kind == "ref":
            return Node("ref", val[1:])
        if kind == "op" and val == "(":
            node = self.or_()
            self.expect_op(")")
            return node
        if kind == "word":
            up = val.upper()
            if up == "NULL":
                return Node("lit", None)
            if up == "CASE":
                return self.case()
            if up == "CAST":
                self.expect_op("(")
                inner = self.or_()
                self.expect_word("AS")
                type_name = self.take()[1].upper()
                self.expect_op(")")
                return Node("cast", type_name, (inner,))
            if self.op("("):
                self.take()
                args = [] if self.op(")") else self._comma_list()
                self.expect_op(")")
                return Node("call", val.lower(), tuple(args))
            raise self.fail(f"{val!r} is not a column reference (write ${val})")
        if kind == "qid":
            raise self.fail(f"{val} is not a column reference (write $name)")
        raise self.fail(f"unexpected {val or 'end'!r}")

    def case(self) -> Node:
        subject = None if self.word("WHEN") else self.or_()
        arms: list[Node] = []
        while self.word("WHEN"):
            self.take()
            cond = self.or_()
            self.expect_word("THEN")
            arms.extend((cond, self.or_()))
        if not arms:
            raise self.fail("CASE needs at least one WHEN")
        default = Node("lit", None)
        if self.word("ELSE"):
            self.take()
            default = self.or_()
        self.expect_word("END")
        # args: subject (or a NULL literal marker via value), then WHEN/THEN pairs, then ELSE
        return Node("case", subject is not None, ((subject or Node("lit", None)), *arms, default))


def parse(text: str, where: str) -> Node:
    """The tree of ``text``; ``where`` names the rule in the one-line error when it cannot be read."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: the expression is empty", "write the new column's SQLite expression")
    return _Parser(text, where).parse()


def references(node: Node) -> set[str]:
    """Every ``$name`` the expression reads."""
    out = {str(node.value)} if node.kind == "ref" else set()
    for arg in node.args:
        out |= references(arg)
    return out
