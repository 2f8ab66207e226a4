"""The `$query` and `$order-by` list-query language, compiled to SQLAlchemy expressions."""

from analytics_mock.query.filter_parser import (
    EMAIL_SETTINGS_ATTRIBUTES,
    And,
    Comparison,
    Kind,
    Membership,
    Node,
    Or,
    QuerySyntaxError,
    parse_filter,
)
from analytics_mock.query.sql import (
    Field,
    OrderBySyntaxError,
    OrderTerm,
    compile_filter,
    compile_order_by,
    parse_order_by,
)

__all__ = [
    "EMAIL_SETTINGS_ATTRIBUTES",
    "And",
    "Comparison",
    "Field",
    "Kind",
    "Membership",
    "Node",
    "Or",
    "OrderBySyntaxError",
    "OrderTerm",
    "QuerySyntaxError",
    "compile_filter",
    "compile_order_by",
    "parse_filter",
    "parse_order_by",
]
