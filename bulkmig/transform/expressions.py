"""DMS ``add-column`` expressions evaluated over whole Arrow batches, giving what SQLite gives.

Why Arrow compute kernels and not a per-row interpreter: an added column is computed for every row of
every part, so it must cost about what copying a column costs.  Why not another engine: the values must
equal SQLite's (DMS evaluates its expressions in SQLite), and SQLite's rules are few enough to write down —
what they are is tested against Python's ``sqlite3`` on random rows (``tests/unit/test_transform_expressions.py``).

Each node gets a static SQLite storage class when it is compiled: INTEGER, REAL, TEXT or NULL (the literal).
The source columns have one each (integers and booleans are INTEGER, floats and NUMERIC are REAL, text,
UUIDs, dates and timestamps are TEXT, the last two as ``YYYY-MM-DD`` / ``YYYY-MM-DD HH:MM:SS[.ffffff]``).
A construct whose class would differ row by row in SQLite (a CASE with a TEXT and an INTEGER arm, arithmetic
on TEXT, a REAL turned into TEXT) is refused when the plan is made, in one line naming the rule and the
construct, rather than evaluated differently from SQLite.

SQLite rules kept: integer ``/`` truncates toward zero and ``%`` takes the dividend's sign; dividing by zero
gives NULL; ``||`` of a NULL is NULL; comparisons and AND/OR/NOT give 1, 0 or NULL (three-valued); ``round``
returns REAL, halves away from zero; ``substr`` counts characters from 1, negative starts from the end, a zero
start eats one character of the length, a negative length takes the characters before the start;
``upper``/``lower`` fold ASCII letters only; ``trim`` removes spaces only unless told which characters;
``CAST(text AS INTEGER)`` reads the longest integer prefix (0 when there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partialmethod

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.transform.kernels import (
    ARROW,
    INTEGER,
    JULIAN_EPOCH_US,
    NULL,
    REAL,
    TEXT,
    Value,
    as_int,
    div,
    mod,
    nan_null,
    repeat,
    sha256_hex,
    substr_bounds,
    text,
    text_to_int,
    timestamp_text,
    to_millis,
    truth,
    typed,
    uuid_text,
)
from bulkmig.transform.parser import Node, parse

# strftime specifiers whose Arrow meaning is SQLite's (on whole seconds).
_STRFTIME_OK = frozenset("YmdHMSjw%")
_DATE_FUNCTIONS = ("date", "time", "datetime", "strftime", "julianday")


Batch = Mapping[str, Value]
Evaluator = Callable[[Batch, int], Value]


@dataclass(frozen=True)
class Compiled:
    """A compiled expression: ``kind`` its SQLite class, ``evaluate(columns, rows)`` its values."""

    text: str
    kind: str
    evaluate: Evaluator
    deterministic: bool = True  # False when it reads the clock ('now'): validation cannot recompute it
    references: frozenset[str] = frozenset()


def column_kind(arrow_type: str) -> str | None:
    """The SQLite class a source column's values have in an expression (None: not usable, e.g. binary)."""
    if arrow_type.startswith(("int", "bool")):
        return INTEGER
    if arrow_type.startswith(("float", "decimal")):
        return REAL
    if arrow_type in ("string", "uuid") or arrow_type.startswith(("date", "timestamp")):
        return TEXT
    return None


def column_value(arr: pa.Array, arrow_type: str) -> Value:
    """A source column as an expression sees it (see the module's docstring for the forms)."""
    if arrow_type.startswith("decimal"):  # NUMERIC (PostgreSQL's travels as its exact text): SQLite's REAL
        return Value(nan_null(pc.cast(arr, pa.float64())), REAL)
    if arr.type == pa.string() and not arrow_type.startswith(("date", "timestamp")):
        return Value(arr, TEXT)
    if arrow_type.startswith("bool"):
        return Value(pc.cast(arr, pa.int64()), INTEGER)
    if arrow_type.startswith("int"):
        return Value(pc.cast(arr, pa.int64()), INTEGER)
    if arrow_type.startswith(("float", "decimal")):
        return Value(pc.cast(arr, pa.float64()), REAL)
    if arrow_type == "uuid":
        storage = arr.storage if isinstance(arr.type, pa.ExtensionType) else arr
        hexed = pa.array([None if b is None else uuid_text(b) for b in storage.to_pylist()], pa.string())
        return Value(hexed, TEXT)
    if arrow_type.startswith("date") and arr.type != pa.string():
        ts = pc.cast(arr, pa.timestamp("us"))
        return Value(pc.strftime(arr, format="%Y-%m-%d"), TEXT, ts)
    if arrow_type.startswith("timestamp") and arr.type != pa.string():
        ts = arr
        if getattr(arr.type, "tz", None):  # a zoned timestamp is shown in UTC
            ts = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).cast(pa.timestamp("us"))
        ts = pc.cast(ts, pa.timestamp("us"))
        return Value(timestamp_text(ts), TEXT, ts)
    return Value(pc.cast(arr, pa.string()), TEXT)


class _Compiler:
    def __init__(
        self,
        rule: str,
        text: str,
        kinds: Mapping[str, str],
        constants: Mapping[str, object],
        temporal: frozenset[str] = frozenset(),
    ) -> None:
        self.rule, self.text, self.kinds, self.constants = rule, text, kinds, constants
        self.temporal = temporal  # the date and timestamp columns (date functions read their typed values)
        self.deterministic = True
        self.refs: set[str] = set()

    def refuse(self, what: str, hint: str = "") -> ConfigError:
        return ConfigError(
            f"transformation rule {self.rule!r}: {what} (expression {self.text!r})",
            hint or "rewrite the expression without it, or add the column on the target after the migration",
        )

    # ----------------------------------------------------------------------------------------- nodes

    def compile(self, node: Node) -> tuple[str, Evaluator]:
        method = getattr(self, f"_{node.kind}")
        return method(node)

    def _lit(self, node: Node) -> tuple[str, Evaluator]:
        v = node.value
        kind = NULL if v is None else INTEGER if isinstance(v, int) else REAL if isinstance(v, float) else TEXT
        scalar = pa.scalar(v, ARROW[kind])
        return kind, lambda cols, n: Value(repeat(scalar, n), kind)

    def _ref(self, node: Node) -> tuple[str, Evaluator]:
        name = str(node.value)
        if name in self.constants:
            value = self.constants[name]
            return self._lit(Node("lit", value))
        if name.startswith(("AR_H_", "AR_M_")) and name not in self.kinds:
            raise self.refuse(f"${name} is not a header or metadata variable bulkmig knows")
        found = name if name in self.kinds else _unique_folded(name, self.kinds)
        if found is None:
            raise self.refuse(f"${name} is not a column of the table", "name a source column ($name, case-sensitive)")
        kind = self.kinds[found]
        self.refs.add(found)
        return kind, lambda cols, n: cols[found]

    def _unary(self, node: Node) -> tuple[str, Evaluator]:
        kind, inner = self.compile(node.args[0])
        if node.value == "NOT":
            self._truthy_ok(kind, "NOT")

            def not_(cols: Batch, n: int) -> Value:
                return Value(as_int(pc.invert(truth(inner(cols, n)))), INTEGER)

            return INTEGER, not_
        if kind == NULL:
            return NULL, inner
        if kind not in (INTEGER, REAL):
            raise self.refuse("unary minus on TEXT")
        return kind, lambda cols, n: Value(pc.negate_checked(inner(cols, n).arr), kind)

    def _truthy_ok(self, kind: str, what: str) -> None:
        if kind == TEXT:
            raise self.refuse(f"{what} on a TEXT value (SQLite reads it as a number)", "compare it: $col <> ''")

    def _binary(self, node: Node) -> tuple[str, Evaluator]:
        op = str(node.value)
        (lk, left), (rk, right) = self.compile(node.args[0]), self.compile(node.args[1])
        if op in ("AND", "OR"):
            self._truthy_ok(lk, op)
            self._truthy_ok(rk, op)
            fn = pc.and_kleene if op == "AND" else pc.or_kleene
            return INTEGER, lambda c, n: Value(as_int(fn(truth(left(c, n)), truth(right(c, n)))), INTEGER)
        if op == "||":
            for k in (lk, rk):
                if k == REAL:
                    raise self.refuse("|| on a REAL value (SQLite prints it in its own float format)")
            return TEXT, lambda c, n: Value(pc.binary_join_element_wise(text(left(c, n)), text(right(c, n)), ""), TEXT)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            if NULL not in (lk, rk) and lk != rk and not {lk, rk} <= {INTEGER, REAL}:
                raise self.refuse(f"{op} between {lk} and {rk} (SQLite's type affinity decides it row by row)")
            fn = {
                "=": pc.equal,
                "!=": pc.not_equal,
                "<": pc.less,
                "<=": pc.less_equal,
                ">": pc.greater,
                ">=": pc.greater_equal,
            }[op]
            if NULL in (lk, rk):
                return INTEGER, lambda c, n: Value(pa.nulls(n, pa.int64()), INTEGER)
            return INTEGER, lambda c, n: Value(as_int(fn(left(c, n).arr, right(c, n).arr)), INTEGER)
        # arithmetic
        for k in (lk, rk):
            if k == TEXT:
                raise self.refuse(f"{op} on a TEXT value", "CAST it first: CAST($col AS INTEGER)")
        if NULL in (lk, rk):
            kind = REAL if REAL in (lk, rk) else INTEGER
            return kind, lambda c, n: Value(pa.nulls(n, ARROW[kind]), kind)
        kind = REAL if REAL in (lk, rk) else INTEGER
        if op == "%":
            return kind, lambda c, n: mod(left(c, n), right(c, n), kind)
        if op == "/":
            return kind, lambda c, n: div(left(c, n), right(c, n), kind)
        fn = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}[op]
        rule = self.rule

        def arith(c: Batch, n: int) -> Value:
            a, b = left(c, n).arr, right(c, n).arr
            if kind == REAL:
                a, b = pc.cast(a, pa.float64()), pc.cast(b, pa.float64())
            try:
                return Value(nan_null(fn(a, b)), kind)
            except pa.ArrowInvalid:
                raise SourceError(
                    f"transformation rule {rule!r}: integer overflow in {op}",
                    "CAST an operand AS REAL in the expression",
                ) from None

        return kind, arith

    def _isnull(self, node: Node) -> tuple[str, Evaluator]:
        _, inner = self.compile(node.args[0])
        want_null = bool(node.value)

        def isnull(c: Batch, n: int) -> Value:
            test = pc.is_null(inner(c, n).arr)
            return Value(as_int(test if want_null else pc.invert(test)), INTEGER)

        return INTEGER, isnull

    def _between(self, node: Node) -> tuple[str, Evaluator]:
        x, lo, hi = node.args
        both = Node("binary", "AND", (Node("binary", ">=", (x, lo)), Node("binary", "<=", (x, hi))))
        return self.compile(Node("unary", "NOT", (both,)) if node.value else both)

    def _in(self, node: Node) -> tuple[str, Evaluator]:
        x, *items = node.args
        tree = Node("binary", "=", (x, items[0]))
        for item in items[1:]:
            tree = Node("binary", "OR", (tree, Node("binary", "=", (x, item))))
        return self.compile(Node("unary", "NOT", (tree,)) if node.value else tree)

    def _case(self, node: Node) -> tuple[str, Evaluator]:
        has_subject = bool(node.value)
        subject, *rest = node.args
        default = rest[-1]
        pairs = list(zip(rest[0:-1:2], rest[1:-1:2], strict=True))
        conds = [self.compile(Node("binary", "=", (subject, w)) if has_subject else w) for w, _ in pairs]
        for k, _ in conds:
            self._truthy_ok(k, "CASE WHEN")
        values = [self.compile(t) for _, t in pairs] + [self.compile(default)]
        kinds = {k for k, _ in values} - {NULL}
        if len(kinds) > 1:
            raise self.refuse(f"CASE arms of different types ({', '.join(sorted(kinds))})", "CAST the arms to one type")
        kind = kinds.pop() if kinds else NULL

        def case(c: Batch, n: int) -> Value:
            out = typed(values[-1][1](c, n), kind)
            for (_, cond), (_, val) in zip(reversed(conds), reversed(values[:-1]), strict=True):
                hit = pc.fill_null(truth(cond(c, n)), False)
                out = pc.if_else(hit, typed(val(c, n), kind), out)
            return Value(out, kind)

        return kind, case

    def _cast(self, node: Node) -> tuple[str, Evaluator]:
        to = str(node.value)
        kind, inner = self.compile(node.args[0])
        target = (
            INTEGER
            if "INT" in to
            else TEXT
            if to in ("TEXT", "VARCHAR", "CHAR")
            else REAL
            if to
            in (
                "REAL",
                "FLOAT",
                "DOUBLE",
            )
            else None
        )
        if target is None:
            raise self.refuse(f"CAST AS {to}", "CAST AS INTEGER, REAL or TEXT")
        if kind in (NULL, target):
            return (target if kind != NULL else NULL), inner
        if (kind, target) == (INTEGER, TEXT):
            return TEXT, lambda c, n: Value(text(inner(c, n)), TEXT)
        if (kind, target) == (INTEGER, REAL):
            return REAL, lambda c, n: Value(pc.cast(inner(c, n).arr, pa.float64()), REAL)
        if (kind, target) == (REAL, INTEGER):
            return INTEGER, lambda c, n: Value(pc.cast(pc.trunc(inner(c, n).arr), pa.int64()), INTEGER)
        if (kind, target) == (TEXT, INTEGER):
            return INTEGER, lambda c, n: Value(text_to_int(inner(c, n).arr), INTEGER)
        raise self.refuse(f"CAST of {kind} AS {to}")

    # -------------------------------------------------------------------------------------- functions

    def _call(self, node: Node) -> tuple[str, Evaluator]:
        name = str(node.value)
        args = node.args
        if name in _DATE_FUNCTIONS:
            return self._date_function(name, args)
        handler = getattr(self, f"_fn_{name}", None)
        if handler is None:
            raise self.refuse(f"function {name}() is not supported")
        return handler(args)

    def _arity(self, name: str, args: tuple[Node, ...], lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            raise self.refuse(f"{name}() takes {lo if lo == hi else f'{lo} to {hi}'} arguments, not {len(args)}")

    def _literal(self, node: Node, name: str, types: tuple[type, ...]) -> object:
        if node.kind != "lit" or (node.value is not None and not isinstance(node.value, types)):
            raise self.refuse(f"{name}() needs a literal here", "write the value in the expression")
        return node.value

    def _text_arg(self, node: Node, name: str) -> tuple[str, Evaluator]:
        kind, fn = self.compile(node)
        if kind == REAL:
            raise self.refuse(f"{name}() of a REAL value (SQLite prints it in its own float format)")
        return kind, fn

    # Functions of one family (upper and lower, the trims, max and min) are one method each, told the function's
    # name (for messages) and the Arrow kernel it runs.

    def _text_fn(self, name: str, args: tuple[Node, ...], fn: Callable[[pa.Array], pa.Array]) -> tuple[str, Evaluator]:
        self._arity(name, args, 1, 1)
        _, inner = self._text_arg(args[0], name)
        return TEXT, lambda c, n: Value(fn(text(inner(c, n))), TEXT)

    _fn_upper = partialmethod(_text_fn, "upper", fn=pc.ascii_upper)
    _fn_lower = partialmethod(_text_fn, "lower", fn=pc.ascii_lower)

    def _fn_length(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("length", args, 1, 1)
        _, inner = self._text_arg(args[0], "length")
        return INTEGER, lambda c, n: Value(pc.cast(pc.utf8_length(text(inner(c, n))), pa.int64()), INTEGER)

    def _fn_substr(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("substr", args, 2, 3)
        _, inner = self._text_arg(args[0], "substr")
        start = self._literal(args[1], "substr", (int,))
        length = self._literal(args[2], "substr", (int,)) if len(args) == 3 else None
        if start is None or (len(args) == 3 and length is None):
            return TEXT, lambda c, n: Value(pa.nulls(n, pa.string()), TEXT)
        lo, hi = substr_bounds(int(start), None if length is None else int(length))  # type: ignore[arg-type]
        return TEXT, lambda c, n: Value(pc.utf8_slice_codeunits(text(inner(c, n)), start=lo, stop=hi), TEXT)

    _fn_substring = _fn_substr

    def _trim(self, name: str, args: tuple[Node, ...], fn: Callable[..., pa.Array]) -> tuple[str, Evaluator]:
        self._arity(name, args, 1, 2)
        _, inner = self._text_arg(args[0], name)
        chars = self._literal(args[1], name, (str,)) if len(args) == 2 else " "
        if chars is None:
            return TEXT, lambda c, n: Value(pa.nulls(n, pa.string()), TEXT)
        if chars == "":
            return TEXT, lambda c, n: Value(text(inner(c, n)), TEXT)
        return TEXT, lambda c, n: Value(fn(text(inner(c, n)), characters=chars), TEXT)

    _fn_trim = partialmethod(_trim, "trim", fn=pc.utf8_trim)
    _fn_ltrim = partialmethod(_trim, "ltrim", fn=pc.utf8_ltrim)
    _fn_rtrim = partialmethod(_trim, "rtrim", fn=pc.utf8_rtrim)

    def _fn_replace(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("replace", args, 3, 3)
        _, inner = self._text_arg(args[0], "replace")
        old = self._literal(args[1], "replace", (str,))
        new = self._literal(args[2], "replace", (str,))
        if old is None or new is None:
            return TEXT, lambda c, n: Value(pa.nulls(n, pa.string()), TEXT)
        if old == "":
            return TEXT, lambda c, n: Value(text(inner(c, n)), TEXT)
        return TEXT, lambda c, n: Value(pc.replace_substring(text(inner(c, n)), pattern=old, replacement=new), TEXT)

    def _fn_round(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("round", args, 1, 2)
        kind, inner = self.compile(args[0])
        if kind == TEXT:
            raise self.refuse("round() of TEXT")
        digits = self._literal(args[1], "round", (int,)) if len(args) == 2 else 0
        if kind == NULL or digits is None:
            return REAL, lambda c, n: Value(pa.nulls(n, pa.float64()), REAL)
        nd = max(0, min(30, int(digits)))  # type: ignore[call-overload]

        def round_(c: Batch, n: int) -> Value:
            x = pc.cast(inner(c, n).arr, pa.float64())
            return Value(pc.round(x, nd, round_mode="half_towards_infinity"), REAL)

        return REAL, round_

    def _fn_abs(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("abs", args, 1, 1)
        kind, inner = self.compile(args[0])
        if kind == TEXT:
            raise self.refuse("abs() of TEXT")
        return kind, lambda c, n: Value(pc.abs_checked(inner(c, n).arr) if kind != NULL else inner(c, n).arr, kind)

    def _same_kind(self, name: str, compiled: list[tuple[str, Evaluator]]) -> str:
        kinds = {k for k, _ in compiled} - {NULL}
        if len(kinds) > 1:
            raise self.refuse(f"{name}() of different types ({', '.join(sorted(kinds))})", "CAST them to one type")
        return kinds.pop() if kinds else NULL

    def _fn_coalesce(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        if len(args) < 2:
            raise self.refuse("coalesce() takes at least 2 arguments")
        compiled = [self.compile(a) for a in args]
        kind = self._same_kind("coalesce", compiled)
        return kind, lambda c, n: Value(pc.coalesce(*(typed(f(c, n), kind) for _, f in compiled)), kind)

    def _fn_ifnull(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("ifnull", args, 2, 2)
        return self._fn_coalesce(args)

    def _fn_nullif(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("nullif", args, 2, 2)
        compiled = [self.compile(a) for a in args]
        kind = self._same_kind("nullif", compiled)
        (_, x), (_, y) = compiled

        def nullif(c: Batch, n: int) -> Value:
            xv = typed(x(c, n), kind)
            same = pc.fill_null(pc.equal(xv, typed(y(c, n), kind)), False)
            return Value(pc.if_else(same, pa.nulls(n, xv.type), xv), kind)

        return kind, nullif

    def _minmax(self, name: str, args: tuple[Node, ...], fn: Callable[..., pa.Array]) -> tuple[str, Evaluator]:
        if len(args) < 2:
            raise self.refuse(f"{name}() of one argument is an aggregate; give it two or more")
        compiled = [self.compile(a) for a in args]
        kind = self._same_kind(name, compiled)
        return kind, lambda c, n: Value(fn(*(typed(f(c, n), kind) for _, f in compiled), skip_nulls=False), kind)

    _fn_max = partialmethod(_minmax, "max", fn=pc.max_element_wise)
    _fn_min = partialmethod(_minmax, "min", fn=pc.min_element_wise)

    def _fn_hash_sha256(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("hash_sha256", args, 1, 1)
        _, inner = self._text_arg(args[0], "hash_sha256")
        return TEXT, lambda c, n: Value(sha256_hex(text(inner(c, n))), TEXT)

    def _fn_operation_indicator(self, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        self._arity("operation_indicator", args, 3, 3)
        if "AR_H_OPERATION" in self.kinds:  # captured changes: DMS then keeps deleted rows, flagged
            raise self.refuse(
                "operation_indicator() with CDC (DMS keeps deleted rows, flagged; replay deletes them)",
                "use $AR_H_OPERATION for the operation of each change",
            )
        op = self.constants.get("AR_H_OPERATION")
        pick = {"DELETE": 0, "UPDATE": 1, "INSERT": 2}.get(str(op), 2)
        return self.compile(args[pick])

    # ---------------------------------------------------------------------------------- date and time

    def _date_function(self, name: str, args: tuple[Node, ...]) -> tuple[str, Evaluator]:
        fmt = None
        if name == "strftime":
            if not args:
                raise self.refuse("strftime() needs a format and a value")
            fmt = self._literal(args[0], "strftime", (str,))
            args = args[1:]
            bad = sorted({fmt[i + 1] for i in range(len(fmt) - 1) if fmt[i] == "%"} - _STRFTIME_OK) if fmt else []
            if bad:
                raise self.refuse(f"strftime() specifier %{bad[0]}", "use %Y %m %d %H %M %S %j %w")
        if not args:
            raise self.refuse(f"{name}() without a value (its 'now' is not supported: it differs on every run)")
        value_node, modifiers = args[0], [self._literal(m, name, (str,)) for m in args[1:]]
        if value_node.kind == "lit" and value_node.value == "now":
            raise self.refuse(f"{name}('now') (a different value on every run cannot be validated)")
        kind, inner = self.compile(value_node)
        if kind == NULL or fmt is None and name == "strftime" or any(m is None for m in modifiers):
            return TEXT, lambda c, n: Value(pa.nulls(n, pa.string()), TEXT)
        steps = [self._modifier(str(m)) for m in modifiers]
        temporal = value_node.kind == "ref" and self._is_temporal(value_node)
        if not temporal:
            raise self.refuse(f"{name}() of a value that is not a date or timestamp column")
        out_fmt = {"date": "%Y-%m-%d", "time": "%H:%M:%S", "datetime": "%Y-%m-%d %H:%M:%S"}.get(name, fmt)

        def date_fn(c: Batch, n: int) -> Value:
            ts = inner(c, n).ts
            assert ts is not None
            if steps:  # SQLite recomputes a modified time from whole milliseconds (rounded); else shows its seconds
                ts = to_millis(ts)
            for step in steps:
                ts = step(ts)
            whole = pc.cast(pc.floor_temporal(ts, unit="second"), pa.timestamp("s"))
            if name == "julianday":  # SQLite: milliseconds (rounded) since the Julian epoch / 86400000.0
                ms = pc.divide(pc.add(pc.cast(ts, pa.int64()), JULIAN_EPOCH_US + 500), 1000)
                return Value(pc.divide(pc.cast(ms, pa.float64()), 86400000.0), REAL)
            return Value(pc.strftime(whole, format=str(out_fmt)), TEXT)

        return (REAL if name == "julianday" else TEXT), date_fn

    def _is_temporal(self, node: Node) -> bool:
        name = str(node.value)
        found = name if name in self.kinds else _unique_folded(name, self.kinds)
        return found is not None and found in self.temporal

    def _modifier(self, text: str) -> Callable[[pa.Array], pa.Array]:
        t = text.strip().lower()
        if t in ("start of day", "start of month", "start of year"):
            unit = t.rsplit(" ", 1)[1]
            return lambda ts: pc.floor_temporal(ts, unit=unit)
        parts = t.split()
        units = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
        if len(parts) == 2 and parts[1].rstrip("s") in units:
            try:
                amount = float(parts[0])
            except ValueError:
                amount = None
            if amount is not None and amount == int(amount):
                micros = int(amount) * units[parts[1].rstrip("s")] * 1_000_000
                delta = pa.scalar(micros, pa.duration("us"))
                return lambda ts: pc.add(ts, delta)
        raise self.refuse(f"date modifier {text!r}", "use '+N days|hours|minutes|seconds' or 'start of day|month|year'")


def _unique_folded(name: str, names: Mapping[str, str]) -> str | None:
    """SQLite matches column names without regard to case: a ``$NAME`` finds ``name`` when only one does."""
    hits = [n for n in names if n.lower() == name.lower()]
    return hits[0] if len(hits) == 1 else None


# --------------------------------------------------------------------------------------------- entry


def compile_expression(
    text: str,
    rule: str,
    columns: Mapping[str, str],
    constants: Mapping[str, object] | None = None,
) -> Compiled:
    """Compile ``text`` for a table whose columns are ``columns`` (name -> Arrow type name as the plan writes
    it); ``constants``: the ``$AR_M_*`` / ``$AR_H_*`` variables' values.  Raises one ConfigError naming
    ``rule`` and the construct when something is not supported."""
    node = parse(text, f"transformation rule {rule!r}")
    kinds: dict[str, str] = {}
    for name, arrow in columns.items():
        kind = column_kind(arrow)
        if kind is not None:
            kinds[name] = kind
    temporal = frozenset(n for n, a in columns.items() if a.startswith(("date", "timestamp")))
    compiler = _Compiler(rule, text, kinds, constants or {}, temporal)
    kind, fn = compiler.compile(node)
    return Compiled(text, kind, fn, compiler.deterministic, frozenset(compiler.refs))


def evaluate(compiled: Compiled, batch: pa.RecordBatch, arrow_types: Mapping[str, str]) -> Value:
    """``compiled`` over ``batch`` (its columns named as the source's, ``arrow_types`` their plan types)."""
    cols = {name: column_value(batch.column(name), arrow_types[name]) for name in compiled.references}
    return compiled.evaluate(cols, batch.num_rows)
