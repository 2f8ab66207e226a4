"""The `$query` parser: accepted syntax, AST shape and every error message."""

from __future__ import annotations

import dataclasses

import pytest

from analytics_mock.query.filter_parser import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    And,
    Comparison,
    Kind,
    Membership,
    Or,
    QuerySyntaxError,
    operator_problem,
    parse_filter,
    value_problem,
)

A = Comparison("hostname", "eq", "a")
B = Comparison("hostname", "eq", "b")
C = Comparison("hostname", "eq", "c")
D = Comparison("hostname", "eq", "d")


@pytest.mark.parametrize(
    ("spelling", "operator"),
    [
        ("eq", "eq"),
        ("=", "eq"),
        ("ne", "ne"),
        ("<>", "ne"),
        ("!=", "ne"),
        ("gt", "gt"),
        (">", "gt"),
        ("lt", "lt"),
        ("<", "lt"),
        ("ge", "ge"),
        (">=", "ge"),
        ("le", "le"),
        ("<=", "le"),
        ("starts", "starts"),
        ("ends", "ends"),
        ("EQ", "eq"),
        ("Ne", "ne"),
        ("gT", "gt"),
        ("LT", "lt"),
        ("GE", "ge"),
        ("lE", "le"),
        ("STARTS", "starts"),
        ("Ends", "ends"),
    ],
)
def test_every_comparison_operator_spelling(spelling: str, operator: str) -> None:
    assert parse_filter(f"hostname {spelling} 'x'") == Comparison("hostname", operator, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("symbol", ["=", "<>", "!=", ">", "<", ">=", "<="])
def test_symbol_operators_need_no_whitespace(symbol: str) -> None:
    assert parse_filter(f"portNumber{symbol}25") == parse_filter(f"portNumber {symbol} 25")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("portNumber in [25]", Membership("portNumber", (25,))),
        ("portNumber in [25, 465,587]", Membership("portNumber", (25, 465, 587))),
        ("hostname IN ['a','b']", Membership("hostname", ("a", "b"))),
        ("hostname not in ['a']", Membership("hostname", ("a",), negated=True)),
        ("hostname NOT IN ['a', 'b']", Membership("hostname", ("a", "b"), negated=True)),
        ("hostname Not In['a']", Membership("hostname", ("a",), negated=True)),
        (
            "authenticationEnabled in [true, FALSE]",
            Membership("authenticationEnabled", (True, False)),
        ),
        (
            "authenticationEnabled not in [True]",
            Membership("authenticationEnabled", (True,), negated=True),
        ),
        ("userId in [ '' , 'x' ]", Membership("userId", ("", "x"))),
    ],
)
def test_membership(text: str, expected: Membership) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("userId eq 'O''Brien'", "O'Brien"),
        ("userId eq ''''", "'"),
        ("userId eq ''''''", "''"),
        ("userId eq ''", ""),
        ("userId eq 'a b\tc\nd'", "a b\tc\nd"),
        ("userId eq '(x) [y], and or eq'", "(x) [y], and or eq"),
        ("userId eq '%_\\'", "%_\\"),
        ("userId eq 'ünïcødé'", "ünïcødé"),
        ("portNumber eq 0", 0),
        ("portNumber eq 007", 7),
        ("portNumber eq -25", -25),
        ("portNumber eq 9223372036854775807", 2**63 - 1),
        ("portNumber eq -9223372036854775808", -(2**63)),
        ("authenticationEnabled eq true", True),
        ("authenticationEnabled eq FALSE", False),
        ("authenticationEnabled eq True", True),
    ],
)
def test_values(text: str, value: object) -> None:
    node = parse_filter(text)
    assert isinstance(node, Comparison)
    assert node.value == value
    assert type(node.value) is type(value)


def test_booleans_are_not_integers() -> None:
    node = parse_filter("authenticationEnabled eq true")
    assert isinstance(node, Comparison)
    assert node.value is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hostname eq 'a' and hostname eq 'b'", And((A, B))),
        ("hostname eq 'a' or hostname eq 'b'", Or((A, B))),
        ("hostname eq 'a' and hostname eq 'b' and hostname eq 'c'", And((A, B, C))),
        ("hostname eq 'a' or hostname eq 'b' or hostname eq 'c'", Or((A, B, C))),
        # and binds tighter than or, on either side
        ("hostname eq 'a' or hostname eq 'b' and hostname eq 'c'", Or((A, And((B, C))))),
        ("hostname eq 'a' and hostname eq 'b' or hostname eq 'c'", Or((And((A, B)), C))),
        (
            "hostname eq 'a' and hostname eq 'b' or hostname eq 'c' and hostname eq 'd'",
            Or((And((A, B)), And((C, D)))),
        ),
        # parentheses override it
        ("(hostname eq 'a' or hostname eq 'b') and hostname eq 'c'", And((Or((A, B)), C))),
        ("hostname eq 'a' and (hostname eq 'b' or hostname eq 'c')", And((A, Or((B, C))))),
        ("((hostname eq 'a'))", A),
        ("(hostname eq 'a') and (hostname eq 'b')", And((A, B))),
        ("hostname eq 'a' AND hostname eq 'b' Or hostname eq 'c'", Or((And((A, B)), C))),
    ],
)
def test_precedence_and_grouping(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "hostname eq 'a' and hostname eq 'b'",
        "  hostname   eq\t'a'\nand\r\nhostname eq 'b'  ",
        "(hostname eq 'a')and(hostname eq 'b')",
        "hostname eq'a'and hostname eq'b'",
        "hostname='a' and hostname='b'",
    ],
)
def test_whitespace_is_free_around_punctuation(text: str) -> None:
    assert parse_filter(text) == And((A, B))


def test_custom_attributes() -> None:
    attributes: dict[str, Kind] = {"name": "string", "size": "integer"}
    assert parse_filter("size gt 3", attributes) == Comparison("size", "gt", 3)
    with pytest.raises(QuerySyntaxError, match='unknown attribute "hostname" at position 0'):
        parse_filter("hostname eq 'a'", attributes)


def test_ast_is_immutable() -> None:
    node = parse_filter("hostname eq 'a'")
    assert isinstance(node, Comparison)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.attribute = "userId"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # empty and oversized
        ("", "$query is empty"),
        (" \t\n ", "$query is empty"),
        # lexical
        ("hostname eq 'abc", "unterminated string starting at position 12"),
        ("hostname eq 'O''", "unterminated string starting at position 12"),
        ("hostname eq 'a' and userId eq 'b''", "unterminated string starting at position 30"),
        ("hostname eq 'a' # x", 'unexpected character "#" at position 16'),
        ("hostname eq 'a';", 'unexpected character ";" at position 15'),
        ("hostname eq @x", 'unexpected character "@" at position 12'),
        ("hostname eq \x1b[2J", 'unexpected character "\\u001b" at position 12'),
        ("hostname ! 'a'", 'unexpected character "!" at position 9'),
        ("portNumber eq 25and hostname eq 'a'", 'invalid number "25and" at position 14'),
        ("portNumber eq 1.5", 'invalid number "1.5" at position 14'),
        ("portNumber eq --1", 'invalid number "--1" at position 14'),
        ("portNumber eq -x", 'invalid number "-x" at position 14'),
        ("portNumber eq 1e5", 'invalid number "1e5" at position 14'),
        # attributes (case-sensitive)
        ("hostnme eq 'a'", 'unknown attribute "hostnme" at position 0'),
        ("hostnamé eq 'a'", 'unknown attribute "hostnamé" at position 0'),
        ("host.name eq 'a'", 'unknown attribute "host.name" at position 0'),
        ("Hostname eq 'a'", 'unknown attribute "Hostname" at position 0'),
        ("instanceId eq 'a'", 'unknown attribute "instanceId" at position 0'),
        ("hostname eq 'a' and hostnameeq 'b'", 'unknown attribute "hostnameeq" at position 20'),
        (
            "hostname eq 'a' or " + "x" * 100 + " eq 'b'",
            f'unknown attribute "{"x" * 40}..." at position 19',
        ),
        # structure
        ("hostname eq 'a')", 'unexpected ")" at position 15'),
        ("(hostname eq 'a'))", 'unexpected ")" at position 17'),
        (")", 'expected an attribute name or "(" at position 0, found ")"'),
        (
            "hostname eq 'a' and",
            'expected an attribute name or "(" at position 19, found end of query',
        ),
        ("hostname eq 'a' or or", 'unknown attribute "or" at position 19'),
        ("and hostname eq 'a'", 'unknown attribute "and" at position 0'),
        ("'a' eq hostname", 'expected an attribute name or "(" at position 0, found a string'),
        ("()", 'expected an attribute name or "(" at position 1, found ")"'),
        ("(hostname eq 'a'", 'expected ")" at position 16, found end of query'),
        ("(hostname eq 'a' hostname eq 'b')", 'expected ")" at position 17, found "hostname"'),
        (
            "hostname eq 'a' hostname eq 'b'",
            'expected "and", "or" or end of query at position 16, found "hostname"',
        ),
        (
            "hostname eq 'a' 'b'",
            'expected "and", "or" or end of query at position 16, found a string',
        ),
        # operators
        ("hostname", 'expected an operator after "hostname" at position 8, found end of query'),
        ("hostname 'a'", 'expected an operator after "hostname" at position 9, found a string'),
        ("hostname (", 'expected an operator after "hostname" at position 9, found "("'),
        ("hostname is 'a'", 'unknown operator "is" at position 9'),
        ("hostname like 'a'", 'unknown operator "like" at position 9'),
        ("hostname == 'a'", 'expected a value after "=" at position 10, found "="'),
        ("hostname not 'a'", 'expected "in" after "not" at position 13, found a string'),
        ("hostname not eq 'a'", 'expected "in" after "not" at position 13, found "eq"'),
        # values
        ("hostname eq", 'expected a value after "eq" at position 11, found end of query'),
        ("hostname eq and", 'expected a value after "eq" at position 12, found "and"'),
        ("hostname eq IN", 'expected a value after "eq" at position 12, found "IN"'),
        (
            "hostname eq abc",
            'expected a value after "eq" at position 12, found "abc" (strings need single quotes)',
        ),
        ("hostname >= )", 'expected a value after ">=" at position 12, found ")"'),
        # lists
        ("hostname in 'a'", 'expected "[" after "in" at position 12, found a string'),
        ("hostname IN ('a')", 'expected "[" after "IN" at position 12, found "("'),
        ("hostname in []", 'empty list after "in" at position 12'),
        ("hostname not in [ ]", 'empty list after "in" at position 16'),
        ("hostname in ['a',]", 'expected a value after "," at position 17, found "]"'),
        ("hostname in [,'a']", 'expected a value after "[" at position 13, found ","'),
        ("hostname in ['a' 'b']", 'expected "," or "]" at position 17, found a string'),
        ("hostname in ['a'", 'expected "," or "]" at position 16, found end of query'),
        (
            "hostname in ['a', 1]",
            'the attribute "hostname" takes a string, not a number, at position 18',
        ),
        # type rules
        (
            "portNumber eq '25'",
            'the attribute "portNumber" takes a number, not a string, at position 14',
        ),
        (
            "portNumber eq true",
            'the attribute "portNumber" takes a number, not true or false, at position 14',
        ),
        ("hostname eq 25", 'the attribute "hostname" takes a string, not a number, at position 12'),
        (
            "userId eq false",
            'the attribute "userId" takes a string, not true or false, at position 10',
        ),
        (
            "authenticationEnabled eq 'true'",
            'the attribute "authenticationEnabled" takes true or false, not a string,'
            " at position 25",
        ),
        (
            "authenticationEnabled in [1]",
            'the attribute "authenticationEnabled" takes true or false, not a number,'
            " at position 26",
        ),
        (
            "portNumber eq 9223372036854775808",
            "the number is out of the 64-bit signed integer range, at position 14",
        ),
        (
            "portNumber in [1, -9223372036854775809]",
            "the number is out of the 64-bit signed integer range, at position 18",
        ),
        (
            "authenticationEnabled gt true",
            'the attribute "authenticationEnabled" is a boolean and takes only eq, ne, in and'
            " not in, at position 22",
        ),
        (
            "authenticationEnabled <= false",
            'the attribute "authenticationEnabled" is a boolean and takes only eq, ne, in and'
            " not in, at position 22",
        ),
        (
            "authenticationEnabled starts true",
            'the attribute "authenticationEnabled" is a boolean and takes only eq, ne, in and'
            " not in, at position 22",
        ),
        (
            "portNumber starts 2",
            'starts and ends apply only to string attributes, not to "portNumber", at position 11',
        ),
        (
            "portNumber ENDS '5'",
            'starts and ends apply only to string attributes, not to "portNumber", at position 11',
        ),
        (
            "hostname starts 1",
            'the attribute "hostname" takes a string, not a number, at position 16',
        ),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_filter(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown attribute"):
        parse_filter("nope eq 1")


def test_error_message_is_one_line_even_for_multiline_input() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_filter("hostname eq 'a\nb'\nand\nportNumber eq 'x\ny'")
    assert str(caught.value) == (
        'the attribute "portNumber" takes a number, not a string, at position 36'
    )


def test_nesting_depth_limit() -> None:
    inner = "hostname eq 'a'"
    assert parse_filter("(" * MAX_DEPTH + inner + ")" * MAX_DEPTH) == A
    with pytest.raises(QuerySyntaxError) as caught:
        parse_filter("(" * (MAX_DEPTH + 1) + inner + ")" * (MAX_DEPTH + 1))
    assert str(caught.value) == f"parentheses nested deeper than 32 levels at position {MAX_DEPTH}"


def test_hostile_nesting_fails_cleanly() -> None:
    with pytest.raises(QuerySyntaxError, match="nested deeper than 32 levels"):
        parse_filter("(" * (MAX_QUERY_LENGTH - 1))


def test_length_limit() -> None:
    prefix = "hostname eq '"
    longest = prefix + "x" * (MAX_QUERY_LENGTH - len(prefix) - 1) + "'"
    assert len(longest) == MAX_QUERY_LENGTH
    assert parse_filter(longest) == Comparison("hostname", "eq", longest[len(prefix) : -1])
    with pytest.raises(QuerySyntaxError) as caught:
        parse_filter(longest + " ")
    assert str(caught.value) == "$query is longer than 4096 characters"


def test_long_flat_chain_does_not_recurse() -> None:
    clause = "portNumber eq 1"
    count = MAX_QUERY_LENGTH // (len(clause) + 4)
    node = parse_filter(" or ".join([clause] * count))
    assert isinstance(node, Or)
    assert len(node.operands) == count


def test_problem_helpers() -> None:
    assert operator_problem("hostname", "string", "starts") is None
    assert operator_problem("portNumber", "integer", "gt") is None
    assert operator_problem("authenticationEnabled", "boolean", "ne") is None
    assert operator_problem("authenticationEnabled", "boolean", "lt") is not None
    assert value_problem("portNumber", "integer", True) is not None
    assert value_problem("portNumber", "integer", -(2**63)) is None
    assert value_problem("portNumber", "integer", 2**63) is not None
