"""SQL behaviour of compiled `$query` and `$order-by`, on SQLite and (when configured) PostgreSQL.

Set ANALYTICS_MOCK_TEST_POSTGRES_URL to run every database test on PostgreSQL as well; the
tests then use a uniquely named table, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    text,
)
from sqlalchemy.pool import StaticPool

from analytics_mock.db.models import EmailSettingRow
from analytics_mock.query.filter_parser import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    Comparison,
    Membership,
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

POSTGRES_URL = os.environ.get("ANALYTICS_MOCK_TEST_POSTGRES_URL")

COLUMNS = (
    "instance_id",
    "hostname",
    "authentication_enabled",
    "user_id",
    "sender_address",
    "secure_connection",
    "port_number",
)
# Hostnames in code-point order: r2 "M" < r5 "b" < r1 "m" < r4 "smtpX" < r3 "smtp_" < r6 "ü".
ROWS = [
    ("r1", "mail.example.com", True, "alice", "alice@example.com", "TLS", 465),
    ("r2", "Mail.Example.com", False, None, "noreply@Example.com", "Plain", 25),
    ("r3", "smtp_1%.example.org", True, "O'Brien", "ob@example.org", "STARTTLS", 587),
    ("r4", "smtpX1abc.example.org", False, "", "x@example.org", "Plain", 2525),
    ("r5", "back\\slash.example.net", True, "bob", "bob@example.net", "TLS", 10025),
    ("r6", "ümlaut.example.de", False, None, "Ü@example.de", "STARTTLS", -1),
]
ALL = {row[0] for row in ROWS}


def make_table(name: str, hostname_collation: str | None) -> Table:
    """The 7 columns; `hostname` gets a case-insensitive or locale collation to override."""
    return Table(
        name,
        MetaData(),
        Column("instance_id", String(255), primary_key=True),
        Column("hostname", String(255, collation=hostname_collation), nullable=False),
        Column("authentication_enabled", Boolean, nullable=False),
        Column("user_id", String(255), nullable=True),
        Column("sender_address", String(320), nullable=False),
        Column("secure_connection", String(16), nullable=False),
        Column("port_number", Integer, nullable=False),
    )


def make_fields(table: Table) -> dict[str, Field]:
    c = table.c
    return {
        "instanceID": Field(c.instance_id, "string"),
        "hostname": Field(c.hostname, "string"),
        "authenticationEnabled": Field(c.authentication_enabled, "boolean"),
        "userId": Field(c.user_id, "string", nullable=True),
        "senderAddress": Field(c.sender_address, "string"),
        "secureConnection": Field(c.secure_connection, "string"),
        "portNumber": Field(c.port_number, "integer"),
    }


@dataclass
class Db:
    engine: Engine
    table: Table
    fields: dict[str, Field]
    hostname_collation: str | None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ids(self, query: str) -> set[str]:
        where = compile_filter(parse_filter(query), self.fields, self.dialect)
        with self.engine.connect() as conn:
            return set(conn.scalars(select(self.table.c.instance_id).where(where)))

    def ordered(self, order_by: str) -> list[str]:
        order = compile_order_by(parse_order_by(order_by), self.fields, self.dialect)
        ids = self.table.c.instance_id
        with self.engine.connect() as conn:
            return list(conn.scalars(select(ids).order_by(*order, ids)))


def _icu_collation(engine: Engine) -> str | None:
    with engine.connect() as conn:
        found = conn.scalar(text("SELECT collname FROM pg_collation WHERE collname = 'en-x-icu'"))
    return None if found is None else str(found)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    """A table holding ROWS, on each backend."""
    if request.param == "sqlite":
        engine = create_engine("sqlite://", poolclass=StaticPool)
        collation: str | None = "NOCASE"
    else:
        if not POSTGRES_URL:
            pytest.skip("ANALYTICS_MOCK_TEST_POSTGRES_URL is not set")
        engine = create_engine(POSTGRES_URL)
        collation = _icu_collation(engine)
    table = make_table(f"query_test_{uuid.uuid4().hex[:12]}", collation)
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), [dict(zip(COLUMNS, row, strict=True)) for row in ROWS])
        yield Db(engine, table, make_fields(table), collation)
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


FILTER_CASES: list[tuple[str, set[str]]] = [
    # strings: exact, case-sensitive
    ("hostname eq 'mail.example.com'", {"r1"}),
    ("hostname = 'MAIL.EXAMPLE.COM'", set()),
    ("hostname ne 'mail.example.com'", ALL - {"r1"}),
    ("hostname <> 'MAIL.EXAMPLE.COM'", ALL),
    ("hostname in ['mail.example.com', 'Mail.Example.com']", {"r1", "r2"}),
    ("hostname in ['MAIL.EXAMPLE.COM']", set()),
    ("hostname not in ['mail.example.com']", ALL - {"r1"}),
    ("secureConnection eq 'TLS'", {"r1", "r5"}),
    ("secureConnection eq 'tls'", set()),
    ("instanceID in ['r1', 'r3', 'nope']", {"r1", "r3"}),
    # strings: code-point order, uppercase before lowercase, "X" before "_" before "ü"
    ("hostname lt 'a'", {"r2"}),
    ("hostname gt 'a'", ALL - {"r2"}),
    ("hostname ge 'mail.example.com'", {"r1", "r3", "r4", "r6"}),
    ("hostname <= 'mail.example.com'", {"r1", "r2", "r5"}),
    ("hostname > 'smtp_'", {"r3", "r6"}),
    ("hostname >= 'smtpX'", {"r3", "r4", "r6"}),
    ("hostname gt 'z'", {"r6"}),
    # starts / ends: case-sensitive, %, _ and \ literal, lengths in characters
    ("hostname starts 'mail'", {"r1"}),
    ("hostname starts 'MAIL'", set()),
    ("hostname STARTS 'Mail'", {"r2"}),
    ("hostname starts 'smtp_1%'", {"r3"}),
    ("hostname starts 'smtp_'", {"r3"}),
    ("hostname starts 'smtp%'", set()),
    ("hostname starts '_'", set()),
    ("hostname starts 'back\\'", {"r5"}),
    ("hostname starts 'back\\s'", {"r5"}),
    ("hostname starts 'ümlaut.'", {"r6"}),
    ("hostname starts 'Ümlaut'", set()),
    ("hostname starts 'mail.example.com'", {"r1"}),
    ("hostname starts 'mail.example.com.'", set()),
    ("hostname starts ''", ALL),
    ("hostname ends '.example.org'", {"r3", "r4"}),
    ("hostname ends '.ORG'", set()),
    ("hostname ends '%.example.org'", {"r3"}),
    ("hostname ends '_1%.example.org'", {"r3"}),
    ("hostname ends '%'", set()),
    ("hostname ends 'c.example.org'", {"r4"}),
    ("hostname ends 'slash.example.net'", {"r5"}),
    ("hostname ends '\\slash.example.net'", {"r5"}),
    ("hostname ends 'ümlaut.example.de'", {"r6"}),
    ("hostname ends 'mlaut.example.de'", {"r6"}),
    ("hostname ends 'xmail.example.com'", set()),
    ("hostname ends 'zzzzmail.example.com'", set()),
    ("userId ends 'xalice'", set()),
    ("hostname ends ''", ALL),
    ("senderAddress ends '@example.com'", {"r1"}),
    ("senderAddress ends '@Example.com'", {"r2"}),
    ("senderAddress ends 'Ü@example.de'", {"r6"}),
    ("senderAddress ends 'ü@example.de'", set()),
    ("senderAddress starts 'Ü'", {"r6"}),
    # NULL userId: only ne and not in match it
    ("userId eq 'alice'", {"r1"}),
    ("userId ne 'alice'", {"r2", "r3", "r4", "r5", "r6"}),
    ("userId <> 'alice'", {"r2", "r3", "r4", "r5", "r6"}),
    ("userId != 'alice'", {"r2", "r3", "r4", "r5", "r6"}),
    ("userId eq ''", {"r4"}),
    ("userId ne ''", {"r1", "r2", "r3", "r5", "r6"}),
    ("userId in ['alice', 'bob']", {"r1", "r5"}),
    ("userId not in ['alice', 'bob']", {"r2", "r3", "r4", "r6"}),
    ("userId not in ['']", {"r1", "r2", "r3", "r5", "r6"}),
    ("userId gt ''", {"r1", "r3", "r5"}),
    ("userId ge ''", {"r1", "r3", "r4", "r5"}),
    ("userId lt 'zzz'", {"r1", "r3", "r4", "r5"}),
    ("userId le 'alice'", {"r1", "r3", "r4"}),
    ("userId starts ''", {"r1", "r3", "r4", "r5"}),
    ("userId ends ''", {"r1", "r3", "r4", "r5"}),
    ("userId ends 'n'", {"r3"}),
    ("userId eq 'O''Brien'", {"r3"}),
    ("userId ne 'alice' and userId ne 'bob'", {"r2", "r3", "r4", "r6"}),
    ("userId eq 'alice' or userId ne 'alice'", ALL),
    # integers, including the 64-bit extremes against a 32-bit column
    ("portNumber eq 25", {"r2"}),
    ("portNumber = -1", {"r6"}),
    ("portNumber ne 25", ALL - {"r2"}),
    ("portNumber > 500", {"r3", "r4", "r5"}),
    ("portNumber lt 0", {"r6"}),
    ("portNumber ge 465 and portNumber le 587", {"r1", "r3"}),
    ("portNumber in [25, 465]", {"r1", "r2"}),
    ("portNumber not in [25, 465]", {"r3", "r4", "r5", "r6"}),
    ("portNumber lt 9223372036854775807", ALL),
    ("portNumber gt -9223372036854775808", ALL),
    ("portNumber in [9223372036854775807, 25]", {"r2"}),
    ("portNumber eq -9223372036854775808", set()),
    # booleans
    ("authenticationEnabled eq true", {"r1", "r3", "r5"}),
    ("authenticationEnabled = FALSE", {"r2", "r4", "r6"}),
    ("authenticationEnabled ne true", {"r2", "r4", "r6"}),
    ("authenticationEnabled != false", {"r1", "r3", "r5"}),
    ("authenticationEnabled in [true, false]", ALL),
    ("authenticationEnabled not in [true]", {"r2", "r4", "r6"}),
    # logic
    (
        "secureConnection eq 'Plain' or secureConnection eq 'TLS' and portNumber gt 1000",
        {"r2", "r4", "r5"},
    ),
    (
        "(secureConnection eq 'Plain' or secureConnection eq 'TLS') and portNumber gt 1000",
        {"r4", "r5"},
    ),
    ("authenticationEnabled eq true and (userId eq 'bob' or hostname starts 'smtp')", {"r3", "r5"}),
    ("(" * MAX_DEPTH + "portNumber eq 25" + ")" * MAX_DEPTH, {"r2"}),
    # values are bound, never spliced into SQL
    ("hostname eq 'x'' or ''1''=''1'", set()),
    ("hostname eq 'x''; DROP TABLE t; --'", set()),
]


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_filter(db: Db, query: str, expected: set[str]) -> None:
    assert db.ids(query) == expected


def test_many_terms(db: Db) -> None:
    clause = "portNumber eq 25"
    query = " or ".join([clause] * (MAX_QUERY_LENGTH // (len(clause) + 4)))
    assert db.ids(query) == {"r2"}


def test_long_list(db: Db) -> None:
    ports = ", ".join(str(port) for port in range(1, 700))
    assert db.ids(f"portNumber in [{ports}]") == {"r1", "r2", "r3"}


def test_the_columns_own_collation_would_be_wrong(db: Db) -> None:
    """The test table is set up so that a query that forgot the collation would fail."""
    hostname = db.table.c.hostname
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            found = set(
                conn.scalars(select(db.table.c.instance_id).where(hostname == "MAIL.EXAMPLE.COM"))
            )
            assert found == {"r1", "r2"}
        elif db.hostname_collation is None:
            pytest.skip("no ICU collation in this PostgreSQL")
        else:
            order = list(conn.scalars(select(db.table.c.instance_id).order_by(hostname)))
            assert order != db.ordered("hostname")


ORDER_CASES: list[tuple[str, list[str]]] = [
    ("hostname", ["r2", "r5", "r1", "r4", "r3", "r6"]),
    ("hostname ASC", ["r2", "r5", "r1", "r4", "r3", "r6"]),
    ("hostname desc", ["r6", "r3", "r4", "r1", "r5", "r2"]),
    ("senderAddress", ["r1", "r5", "r2", "r3", "r4", "r6"]),
    ("portNumber DESC", ["r5", "r4", "r3", "r1", "r2", "r6"]),
    ("portNumber", ["r6", "r2", "r1", "r3", "r4", "r5"]),
    # NULL is the lowest userId; the caller's tie-breaker (instanceID) orders r2 before r6
    ("userId", ["r2", "r6", "r4", "r3", "r1", "r5"]),
    ("userId desc", ["r5", "r1", "r3", "r4", "r2", "r6"]),
    ("authenticationEnabled", ["r2", "r4", "r6", "r1", "r3", "r5"]),
    ("authenticationEnabled desc, portNumber", ["r1", "r3", "r5", "r6", "r2", "r4"]),
    ("secureConnection, hostname DESC", ["r4", "r2", "r6", "r3", "r1", "r5"]),
    ("secureConnection desc, userId desc", ["r5", "r1", "r3", "r6", "r4", "r2"]),
    ("instanceID desc", ["r6", "r5", "r4", "r3", "r2", "r1"]),
]


@pytest.mark.parametrize(("order_by", "expected"), ORDER_CASES)
def test_order_by(db: Db, order_by: str, expected: list[str]) -> None:
    assert db.ordered(order_by) == expected


def test_filter_and_order_together(db: Db) -> None:
    where = compile_filter(parse_filter("userId ne 'alice'"), db.fields, db.dialect)
    order = compile_order_by(parse_order_by("portNumber desc"), db.fields, db.dialect)
    with db.engine.connect() as conn:
        rows = conn.scalars(select(db.table.c.instance_id).where(where).order_by(*order))
        assert list(rows) == ["r5", "r4", "r3", "r2", "r6"]


# Compilation without a database

TABLE = make_table("t", None)
FIELDS = make_fields(TABLE)
# Engines are never connected: they only lend their dialects to the SQL compiler.
DIALECTS = {
    "postgresql": create_engine("postgresql+psycopg://").dialect,
    "sqlite": create_engine("sqlite://").dialect,
}


def sql_of(query: str, dialect_name: str) -> tuple[str, dict[str, Any]]:
    where = compile_filter(parse_filter(query), FIELDS, dialect_name)
    compiled = where.compile(dialect=DIALECTS[dialect_name])
    return str(compiled), compiled.params


@pytest.mark.parametrize(
    ("dialect_name", "collate"), [("postgresql", 'COLLATE "C"'), ("sqlite", 'COLLATE "BINARY"')]
)
@pytest.mark.parametrize(
    "query",
    [
        "hostname eq 'a'",
        "hostname gt 'a'",
        "hostname in ['a']",
        "hostname not in ['a']",
        "hostname starts 'a'",
        "hostname ends 'a'",
        "userId ne 'a'",
    ],
)
def test_string_comparisons_carry_the_dialect_collation(
    dialect_name: str, collate: str, query: str
) -> None:
    sql, _ = sql_of(query, dialect_name)
    assert collate in sql


@pytest.mark.parametrize(
    "query", ["portNumber gt 1", "portNumber in [1]", "authenticationEnabled eq true"]
)
def test_no_collation_on_numbers_and_booleans(query: str) -> None:
    sql, _ = sql_of(query, "postgresql")
    assert "COLLATE" not in sql


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite"])
@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("hostname eq 'secret-value'", "secret-value"),
        ("hostname starts 'secret-value'", "secret-value"),
        ("hostname ends 'secret-value'", "secret-value"),
        ("portNumber eq 9876", 9876),
        ("authenticationEnabled eq true", True),
    ],
)
def test_values_are_bound_parameters(dialect_name: str, query: str, value: object) -> None:
    sql, params = sql_of(query, dialect_name)
    assert value in params.values()
    assert str(value) not in sql
    assert "true" not in sql.lower()


def test_no_like_in_starts_and_ends() -> None:
    for dialect_name in ("postgresql", "sqlite"):
        for query in ("hostname starts 'a%'", "hostname ends 'a_'"):
            sql, _ = sql_of(query, dialect_name)
            assert "LIKE" not in sql.upper()


def test_ne_on_nullable_column_includes_null_but_not_on_others() -> None:
    assert "IS NULL" in sql_of("userId ne 'a'", "sqlite")[0]
    assert "IS NULL" in sql_of("userId not in ['a']", "sqlite")[0]
    for query in ("userId eq 'a'", "userId in ['a']", "userId gt 'a'", "hostname ne 'a'"):
        assert "IS NULL" not in sql_of(query, "sqlite")[0]


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="no case-sensitive collation known for dialect 'mysql'"):
        compile_filter(parse_filter("hostname eq 'a'"), FIELDS, "mysql")
    with pytest.raises(ValueError, match="'mssql'"):
        compile_order_by([OrderTerm("hostname")], FIELDS, "mssql")


def test_orm_attributes_are_accepted_as_columns() -> None:
    fields = {"hostname": Field(EmailSettingRow.hostname, "string")}
    where = compile_filter(parse_filter("hostname eq 'a'"), fields, "sqlite")
    order = compile_order_by(parse_order_by("hostname desc"), fields, "postgresql")
    assert str(where.compile(dialect=DIALECTS["sqlite"])) == (
        '(email_settings.hostname COLLATE "BINARY") = ?'
    )
    assert str(order[0].compile(dialect=DIALECTS["postgresql"])) == (
        'email_settings.hostname COLLATE "C" DESC'
    )


def test_order_by_nulls_rule_is_explicit() -> None:
    asc, desc = (
        str(
            compile_order_by([term], FIELDS, "postgresql")[0].compile(
                dialect=DIALECTS["postgresql"]
            )
        )
        for term in (OrderTerm("userId"), OrderTerm("userId", descending=True))
    )
    assert asc == 't.user_id COLLATE "C" ASC NULLS FIRST'
    assert desc == 't.user_id COLLATE "C" DESC NULLS LAST'


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (Comparison("nope", "eq", "a"), 'unknown attribute "nope"'),
        (
            Comparison("portNumber", "eq", "25"),
            'the attribute "portNumber" takes a number, not a string',
        ),
        (
            Comparison("portNumber", "eq", True),
            'the attribute "portNumber" takes a number, not true or false',
        ),
        (
            Comparison("portNumber", "eq", 2**63),
            "the number is out of the 64-bit signed integer range",
        ),
        (
            Comparison("hostname", "starts", 1),
            'the attribute "hostname" takes a string, not a number',
        ),
        (
            Comparison("portNumber", "ends", 1),
            'starts and ends apply only to string attributes, not to "portNumber"',
        ),
        (
            Comparison("authenticationEnabled", "ge", True),
            'the attribute "authenticationEnabled" is a boolean and takes only eq, ne, in'
            " and not in",
        ),
        (Membership("hostname", ("a", 1)), 'the attribute "hostname" takes a string, not a number'),
        (Membership("hostname", ()), 'empty list for the attribute "hostname"'),
    ],
)
def test_compile_rechecks_hand_built_nodes(node: Comparison | Membership, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_filter(node, FIELDS, "sqlite")
    assert str(caught.value) == message


def test_compile_checks_attribute_against_fields() -> None:
    node = parse_filter("hostname eq 'a'")
    with pytest.raises(QuerySyntaxError, match='unknown attribute "hostname"'):
        compile_filter(node, {"instanceID": FIELDS["instanceID"]}, "sqlite")
    with pytest.raises(OrderBySyntaxError, match='unknown attribute "hostname"'):
        compile_order_by([OrderTerm("hostname")], {}, "sqlite")


# Parsing $order-by


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hostname", [OrderTerm("hostname")]),
        ("hostname ASC", [OrderTerm("hostname")]),
        ("hostname desc", [OrderTerm("hostname", descending=True)]),
        ("hostname DeSc", [OrderTerm("hostname", descending=True)]),
        (
            "authenticationEnabled DESC,portNumber,  hostname  asc ",
            [
                OrderTerm("authenticationEnabled", descending=True),
                OrderTerm("portNumber"),
                OrderTerm("hostname"),
            ],
        ),
        ("\tuserId\tDESC\t", [OrderTerm("userId", descending=True)]),
    ],
)
def test_parse_order_by(text: str, expected: list[OrderTerm]) -> None:
    assert parse_order_by(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "$order-by is empty"),
        ("   ", "$order-by is empty"),
        ("hostnme", 'unknown attribute "hostnme" at position 0'),
        ("hostname, HOSTNAME", 'unknown attribute "HOSTNAME" at position 10'),
        ("hostname,", "empty item in $order-by at position 9"),
        (",hostname", "empty item in $order-by at position 0"),
        ("hostname,,portNumber", "empty item in $order-by at position 9"),
        ("hostname, ,portNumber", "empty item in $order-by at position 9"),
        (
            "hostname, portNumber desc, hostname",
            'the attribute "hostname" appears twice in $order-by, at position 27',
        ),
        ("hostname up", 'expected ASC or DESC after "hostname" at position 9, found "up"'),
        ("hostname desc asc", 'unexpected "asc" at position 14'),
        (
            "hostname desc; drop table x",
            'expected ASC or DESC after "hostname" at position 9, found "desc;"',
        ),
        ("hostname(", 'unknown attribute "hostname(" at position 0'),
        ("host\x00name", 'unknown attribute "host\\u0000name" at position 0'),
        ("portNumber -1", 'expected ASC or DESC after "portNumber" at position 11, found "-1"'),
    ],
)
def test_parse_order_by_errors(text: str, message: str) -> None:
    with pytest.raises(OrderBySyntaxError) as caught:
        parse_order_by(text)
    assert str(caught.value) == message


def test_parse_order_by_length_limit() -> None:
    with pytest.raises(OrderBySyntaxError, match="longer than 4096 characters"):
        parse_order_by("hostname" + " " * MAX_QUERY_LENGTH)


def test_parse_order_by_custom_attributes() -> None:
    assert parse_order_by("b desc, a", {"a", "b"}) == [OrderTerm("b", True), OrderTerm("a")]
