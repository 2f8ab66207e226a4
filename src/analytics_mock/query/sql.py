"""Compile `$query` ASTs and `$order-by` terms into SQLAlchemy Core expressions.

Strings compare case-sensitively in code-point order on every backend: each string
column is wrapped in an explicit COLLATE picked by `dialect_name` ("C" on PostgreSQL,
"BINARY" on SQLite). The dialect is a plain parameter rather than a `@compiles`
construct because the caller always knows it (`engine.dialect.name`) and the collation
then shows in the emitted SQL. Any other dialect is refused.

NULL rule: `eq`, `in`, `gt`, `starts`, ... never match a NULL column (SQL's own rule),
while `ne` and `not in` do match it, as a Java client expects `null != "x"` to be true.
NULL sorts as the lowest value: first in ascending order, last in descending order.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, assert_never

from sqlalchemy import BigInteger, Boolean, String, and_, bindparam, collate, func, literal, or_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from analytics_mock.query.filter_parser import (
    EMAIL_SETTINGS_ATTRIBUTES,
    MAX_QUERY_LENGTH,
    And,
    Comparison,
    Kind,
    Membership,
    Node,
    Or,
    QuerySyntaxError,
    Value,
    operator_problem,
    parse_filter,
    quote_text,
    value_problem,
)

__all__ = [
    "Field",
    "OrderBySyntaxError",
    "OrderTerm",
    "QuerySyntaxError",
    "compile_filter",
    "compile_order_by",
    "parse_filter",
    "parse_order_by",
]

_COLLATIONS: Final[Mapping[str, str]] = {"postgresql": "C", "sqlite": "BINARY"}

# BigInteger so that PostgreSQL casts bound numbers to int8: any 64-bit value the
# parser accepts must compare, not overflow an int4 cast.
_BIND_TYPES: Final[Mapping[Kind, TypeEngine[Any]]] = {
    "string": String(),
    "integer": BigInteger(),
    "boolean": Boolean(),
}

_COMPARATORS: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "lt": operator.lt,
    "ge": operator.ge,
    "le": operator.le,
}

_DIRECTIONS: Final[Mapping[str, bool]] = {"asc": False, "desc": True}


class OrderBySyntaxError(ValueError):
    """An `$order-by` that cannot be parsed."""


@dataclass(frozen=True)
class OrderTerm:
    """One `$order-by` item."""

    attribute: str
    descending: bool = False


@dataclass(frozen=True)
class Field:
    """A filterable, sortable column (Core column or ORM attribute), its kind and nullability."""

    column: ColumnElement[Any] | QueryableAttribute[Any]
    kind: Kind
    nullable: bool = False

    @property
    def expression(self) -> ColumnElement[Any]:
        """The column as a Core expression."""
        return self.column.expression


def parse_order_by(
    text: str, attributes: Collection[str] = EMAIL_SETTINGS_ATTRIBUTES
) -> list[OrderTerm]:
    """Parse `attr [ASC|DESC], ...` into order terms, checking names against `attributes`."""
    if len(text) > MAX_QUERY_LENGTH:
        raise OrderBySyntaxError(f"$order-by is longer than {MAX_QUERY_LENGTH} characters")
    if not text.strip():
        raise OrderBySyntaxError("$order-by is empty")
    terms: list[OrderTerm] = []
    start = 0
    for item in text.split(","):
        words = [(m.group(), start + m.start()) for m in re.finditer(r"\S+", item)]
        if not words:
            raise OrderBySyntaxError(f"empty item in $order-by at position {start}")
        (attribute, position), *rest = words
        if attribute not in attributes:
            raise OrderBySyntaxError(
                f"unknown attribute {quote_text(attribute)} at position {position}"
            )
        if any(term.attribute == attribute for term in terms):
            raise OrderBySyntaxError(
                f'the attribute "{attribute}" appears twice in $order-by, at position {position}'
            )
        descending = False
        if rest:
            direction, direction_position = rest[0]
            if direction.lower() not in _DIRECTIONS:
                raise OrderBySyntaxError(
                    f'expected ASC or DESC after "{attribute}" at position {direction_position}, '
                    f"found {quote_text(direction)}"
                )
            descending = _DIRECTIONS[direction.lower()]
        if len(rest) > 1:
            junk, junk_position = rest[1]
            raise OrderBySyntaxError(f"unexpected {quote_text(junk)} at position {junk_position}")
        terms.append(OrderTerm(attribute, descending))
        start += len(item) + 1
    return terms


def compile_filter(
    node: Node, fields: Mapping[str, Field], dialect_name: str
) -> ColumnElement[bool]:
    """Compile a `$query` AST into a WHERE clause for the given SQLAlchemy dialect name."""
    return _compile(node, fields, _collation(dialect_name))


def compile_order_by(
    terms: Sequence[OrderTerm], fields: Mapping[str, Field], dialect_name: str
) -> list[ColumnElement[Any]]:
    """Compile `$order-by` terms into ORDER BY expressions for the given dialect name."""
    collation = _collation(dialect_name)
    clauses: list[ColumnElement[Any]] = []
    for term in terms:
        field = fields.get(term.attribute)
        if field is None:
            raise OrderBySyntaxError(f"unknown attribute {quote_text(term.attribute)}")
        column = _comparable(field, collation)
        if not field.nullable:
            clauses.append(column.desc() if term.descending else column.asc())
        elif term.descending:
            clauses.append(column.desc().nulls_last())
        else:
            clauses.append(column.asc().nulls_first())
    return clauses


def _collation(dialect_name: str) -> str:
    try:
        return _COLLATIONS[dialect_name]
    except KeyError:
        raise ValueError(
            f"no case-sensitive collation known for dialect {dialect_name!r}"
        ) from None


def _compile(node: Node, fields: Mapping[str, Field], collation: str) -> ColumnElement[bool]:
    match node:
        case And(operands):
            return and_(*(_compile(operand, fields, collation) for operand in operands))
        case Or(operands):
            return or_(*(_compile(operand, fields, collation) for operand in operands))
        case Comparison():
            return _comparison(node, _field(fields, node.attribute), collation)
        case Membership():
            return _membership(node, _field(fields, node.attribute), collation)
        case _:
            assert_never(node)


def _field(fields: Mapping[str, Field], attribute: str) -> Field:
    field = fields.get(attribute)
    if field is None:
        raise QuerySyntaxError(f"unknown attribute {quote_text(attribute)}")
    return field


def _check_value(attribute: str, field: Field, value: Value) -> None:
    # Re-checked here because an AST may have been built by hand or parsed against other kinds.
    if problem := value_problem(attribute, field.kind, value):
        raise QuerySyntaxError(problem)


def _comparable(field: Field, collation: str) -> ColumnElement[Any]:
    return collate(field.expression, collation) if field.kind == "string" else field.expression


def _comparison(node: Comparison, field: Field, collation: str) -> ColumnElement[bool]:
    if problem := operator_problem(node.attribute, field.kind, node.operator):
        raise QuerySyntaxError(problem)
    _check_value(node.attribute, field, node.value)
    if node.operator in ("starts", "ends"):
        assert isinstance(node.value, str)
        return _affix(node.operator == "starts", field.expression, node.value, collation)
    value = literal(node.value, _BIND_TYPES[field.kind])
    condition: ColumnElement[bool] = _COMPARATORS[node.operator](
        _comparable(field, collation), value
    )
    if node.operator == "ne" and field.nullable:
        return or_(field.expression.is_(None), condition)
    return condition


def _affix(
    prefix: bool, column: ColumnElement[Any], value: str, collation: str
) -> ColumnElement[bool]:
    # Not LIKE: SQLite's LIKE ignores ASCII case, and %, _ and \ would need escaping.
    # substr and length count characters, not bytes, on both SQLite and PostgreSQL.
    bound = literal(value, String())
    if prefix:
        return collate(func.substr(column, 1, len(value)), collation) == bound
    # For a value longer than the column, the start is <= 0 and the tail is still shorter
    # than the value, so it cannot compare equal: no length guard is needed.
    tail = func.substr(column, func.length(column) - len(value) + 1)
    return collate(tail, collation) == bound


def _membership(node: Membership, field: Field, collation: str) -> ColumnElement[bool]:
    if not node.values:
        raise QuerySyntaxError(f'empty list for the attribute "{node.attribute}"')
    for value in node.values:
        _check_value(node.attribute, field, value)
    values = bindparam(None, list(node.values), type_=_BIND_TYPES[field.kind], expanding=True)
    column = _comparable(field, collation)
    if not node.negated:
        return column.in_(values)
    if field.nullable:
        return or_(field.expression.is_(None), column.not_in(values))
    return column.not_in(values)
