"""Parse the vendor's `$query` filter language into a small typed AST.

Grammar of `$query` (keywords case-insensitive, attribute names case-sensitive):

    query      := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := primary ("and" primary)*
    primary    := "(" or_expr ")" | condition
    condition  := ATTRIBUTE OPERATOR value
                | ATTRIBUTE ["not"] "in" "[" value ("," value)* "]"
    value      := 'string with '' escapes' | -?DIGITS | true | false

The parser also enforces the type rules, because only it knows where each token is.
Positions in error messages are 0-based character offsets into the `$query` text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Kind = Literal["string", "integer", "boolean"]
Operator = Literal["eq", "ne", "gt", "lt", "ge", "le", "starts", "ends"]
Value = str | int | bool

MAX_QUERY_LENGTH: Final = 4096
MAX_DEPTH: Final = 32

EMAIL_SETTINGS_ATTRIBUTES: Final[Mapping[str, Kind]] = MappingProxyType(
    {
        "instanceID": "string",
        "hostname": "string",
        "authenticationEnabled": "boolean",
        "userId": "string",
        "senderAddress": "string",
        "secureConnection": "string",
        "portNumber": "integer",
    }
)


class QuerySyntaxError(ValueError):
    """A `$query` that cannot be parsed or does not type-check."""


@dataclass(frozen=True)
class Comparison:
    """`attribute operator value`, with the operator in its canonical word form."""

    attribute: str
    operator: Operator
    value: Value


@dataclass(frozen=True)
class Membership:
    """`attribute in [values]`, or `attribute not in [values]` when negated."""

    attribute: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class And:
    """All operands hold."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one operand holds."""

    operands: tuple[Node, ...]


Node = Comparison | Membership | And | Or


_OPERATORS: Final[Mapping[str, Operator]] = {
    "eq": "eq",
    "=": "eq",
    "ne": "ne",
    "<>": "ne",
    "!=": "ne",
    "gt": "gt",
    ">": "gt",
    "lt": "lt",
    "<": "lt",
    "ge": "ge",
    ">=": "ge",
    "le": "le",
    "<=": "le",
    "starts": "starts",
    "ends": "ends",
}

_RESERVED: Final = frozenset({"and", "or", "not", "in", *_OPERATORS})

_KIND_NAMES: Final[Mapping[Kind, str]] = {
    "string": "a string",
    "integer": "a number",
    "boolean": "true or false",
}

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# A bare run takes digits, letters, "." and "-" together, so "25and" and "1.5" are single
# (invalid) tokens rather than a number glued to a keyword or a stray dot.
_TOKEN: Final = re.compile(
    r"(?P<space>\s+)|(?P<string>')|(?P<symbol><>|!=|>=|<=|[=<>()\[\],])|(?P<bare>[\w.-]+)"
)
_NUMBER: Final = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class _Token:
    kind: Literal["word", "number", "string", "symbol", "end"]
    text: str
    position: int
    value: Value = ""

    def keyword(self) -> str | None:
        """The lower-cased word if this is an ASCII word, for case-insensitive keywords."""
        return self.text.lower() if self.kind == "word" and self.text.isascii() else None

    def is_symbol(self, symbol: str) -> bool:
        return self.kind == "symbol" and self.text == symbol

    def describe(self) -> str:
        if self.kind == "end":
            return "end of query"
        if self.kind == "string":
            return "a string"
        return quote_text(self.text)


def quote_text(text: str) -> str:
    """Quote user text for a one-line error message: shortened, control characters escaped."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in shown) + '"'


def operator_problem(attribute: str, kind: Kind, operator: Operator) -> str | None:
    """Why `operator` cannot apply to an attribute of this kind, or None if it can."""
    if kind == "boolean" and operator not in ("eq", "ne"):
        return f'the attribute "{attribute}" is a boolean and takes only eq, ne, in and not in'
    if operator in ("starts", "ends") and kind != "string":
        return f'starts and ends apply only to string attributes, not to "{attribute}"'
    return None


def value_problem(attribute: str, kind: Kind, value: Value) -> str | None:
    """Why `value` cannot be compared with an attribute of this kind, or None if it can."""
    # bool before int: True is an int to Python, never to the query language.
    actual: Kind = (
        "boolean" if isinstance(value, bool) else "integer" if isinstance(value, int) else "string"
    )
    if actual != kind:
        return f'the attribute "{attribute}" takes {_KIND_NAMES[kind]}, not {_KIND_NAMES[actual]}'
    if actual == "integer" and not _INT64_MIN <= int(value) <= _INT64_MAX:
        return "the number is out of the 64-bit signed integer range"
    return None


def parse_filter(text: str, attributes: Mapping[str, Kind] = EMAIL_SETTINGS_ATTRIBUTES) -> Node:
    """Parse a `$query` string into an AST, checking names and types against `attributes`."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"$query is longer than {MAX_QUERY_LENGTH} characters")
    if not text.strip():
        raise QuerySyntaxError("$query is empty")
    return _Parser(_tokenize(text), attributes).parse()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise QuerySyntaxError(
                f"unexpected character {quote_text(text[position])} at position {position}"
            )
        if match.lastgroup == "string":
            token = _read_string(text, position)
            tokens.append(token)
            position += len(token.text)
            continue
        lexeme = match.group()
        if match.lastgroup == "symbol":
            tokens.append(_Token("symbol", lexeme, position))
        elif match.lastgroup == "bare":
            tokens.append(_bare_token(lexeme, position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> _Token:
    """Read the quoted string at `start`, where `''` stands for one quote."""
    chunks: list[str] = []
    position = start + 1
    while True:
        close = text.find("'", position)
        if close == -1:
            raise QuerySyntaxError(f"unterminated string starting at position {start}")
        chunks.append(text[position:close])
        if text.startswith("''", close):
            chunks.append("'")
            position = close + 2
        else:
            return _Token("string", text[start : close + 1], start, "".join(chunks))


def _bare_token(lexeme: str, position: int) -> _Token:
    if _NUMBER.fullmatch(lexeme):
        return _Token("number", lexeme, position, int(lexeme))
    if lexeme[0] == "-" or lexeme[0].isdigit():
        raise QuerySyntaxError(f"invalid number {quote_text(lexeme)} at position {position}")
    return _Token("word", lexeme, position)


class _Parser:
    def __init__(self, tokens: list[_Token], attributes: Mapping[str, Kind]) -> None:
        self._tokens = tokens
        self._index = 0
        self._attributes = attributes

    def parse(self) -> Node:
        node = self._or(depth=0)
        token = self._peek()
        if token.is_symbol(")"):
            raise QuerySyntaxError(f'unexpected ")" at position {token.position}')
        if token.kind != "end":
            raise _expected('"and", "or" or end of query', token)
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        # The end token stays put so that every lookahead past the input sees "end".
        if token.kind != "end":
            self._index += 1
        return token

    def _accept_keyword(self, keyword: str) -> bool:
        if self._peek().keyword() == keyword:
            self._index += 1
            return True
        return False

    def _or(self, depth: int) -> Node:
        operands = [self._and(depth)]
        while self._accept_keyword("or"):
            operands.append(self._and(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self, depth: int) -> Node:
        operands = [self._primary(depth)]
        while self._accept_keyword("and"):
            operands.append(self._primary(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _primary(self, depth: int) -> Node:
        token = self._next()
        if token.is_symbol("("):
            if depth >= MAX_DEPTH:
                raise QuerySyntaxError(
                    f"parentheses nested deeper than {MAX_DEPTH} levels at position "
                    f"{token.position}"
                )
            node = self._or(depth + 1)
            close = self._next()
            if not close.is_symbol(")"):
                raise _expected('")"', close)
            return node
        if token.kind == "word":
            return self._condition(token)
        raise _expected('an attribute name or "("', token)

    def _condition(self, name: _Token) -> Node:
        attribute = name.text
        kind = self._attributes.get(attribute)
        if kind is None:
            raise QuerySyntaxError(
                f"unknown attribute {quote_text(attribute)} at position {name.position}"
            )
        token = self._next()
        keyword = token.keyword()
        if keyword == "not":
            in_token = self._next()
            if in_token.keyword() != "in":
                raise _expected('"in" after "not"', in_token)
            return Membership(attribute, self._list(attribute, kind, in_token), negated=True)
        if keyword == "in":
            return Membership(attribute, self._list(attribute, kind, token))
        # Word operators match case-insensitively, symbols as written.
        operator = _OPERATORS.get(keyword or token.text)
        if operator is None:
            if token.kind == "word":
                raise QuerySyntaxError(
                    f"unknown operator {quote_text(token.text)} at position {token.position}"
                )
            raise _expected(f'an operator after "{attribute}"', token)
        if problem := operator_problem(attribute, kind, operator):
            raise QuerySyntaxError(f"{problem}, at position {token.position}")
        return Comparison(attribute, operator, self._value(attribute, kind, token))

    def _list(self, attribute: str, kind: Kind, in_token: _Token) -> tuple[Value, ...]:
        bracket = self._next()
        if not bracket.is_symbol("["):
            raise _expected(f'"[" after "{in_token.text}"', bracket)
        if self._peek().is_symbol("]"):
            raise QuerySyntaxError(
                f'empty list after "{in_token.text}" at position {bracket.position}'
            )
        values = [self._value(attribute, kind, bracket)]
        while True:
            separator = self._next()
            if separator.is_symbol("]"):
                return tuple(values)
            if not separator.is_symbol(","):
                raise _expected('"," or "]"', separator)
            values.append(self._value(attribute, kind, separator))

    def _value(self, attribute: str, kind: Kind, after: _Token) -> Value:
        token = self._next()
        value: Value
        if token.kind in ("string", "number"):
            value = token.value
        elif token.keyword() in ("true", "false"):
            value = token.keyword() == "true"
        else:
            unquoted = token.kind == "word" and token.keyword() not in _RESERVED
            hint = " (strings need single quotes)" if unquoted else ""
            raise _expected(f'a value after "{after.text}"', token, hint)
        if problem := value_problem(attribute, kind, value):
            raise QuerySyntaxError(f"{problem}, at position {token.position}")
        return value


def _expected(what: str, found: _Token, hint: str = "") -> QuerySyntaxError:
    return QuerySyntaxError(
        f"expected {what} at position {found.position}, found {found.describe()}{hint}"
    )
