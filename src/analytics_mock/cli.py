"""The `analytics-mock` command: serve, migrate, users unlock, hash-password."""

from __future__ import annotations

import argparse
import gc
import getpass
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from analytics_mock import __version__
from analytics_mock.settings import DATABASE_ERRORS, Settings, StartError, database_error

_HELP = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "HTTP port (default 22015)",
    "database_url": "SQLAlchemy URL (default: sqlite:///analytics-mock.db in the working dir)",
    "users_file": "JSON or YAML file of extra users",
    "log_level": "debug, info, warning or error (default info)",
    "log_format": "text or json (default text)",
    "account_lock_num": "failed logins before an account locks, 0..10, 0 = never (default 0)",
    "lock_system_account": "let the built-in system account be locked too",
    "session_timeout": "seconds an HSSO token lives without use (default 1000)",
    "max_body_size": "largest request body in bytes (default 1048576)",
    "maintenance": "answer every API call with 412 (server not available)",
    "secret_key": "key for the stored SMTP password (prefer the environment variable)",
    "secret_key_file": "file holding that key (default: beside the SQLite database)",
    "sqlite_busy_timeout_ms": "how long SQLite waits for a lock (default 10000)",
    "database_timeout": "seconds a unit of PostgreSQL work may take (default 10)",
    "sqlite_synchronous": "SQLite synchronous pragma (default FULL: every commit is on disk)",
    "sqlite_wal_size_limit": "bytes the SQLite WAL file keeps after a checkpoint (default 16 MiB)",
    "test_mail_mode": "smtp (really deliver test mails) or capture (only record them)",
    "smtp_timeout": "seconds a whole test-mail attempt may take (default 10)",
    "smtp_connect_timeout": "seconds to connect to the SMTP server (default 10)",
    "smtp_ca_file": "extra CA bundle to trust for the SMTP server's certificate",
    "smtp_verify_tls": "verify the SMTP server's certificate (default on)",
    "control_api": "serve the test controls under /_mock/ (default on)",
    "control_token": "require 'Authorization: Bearer TOKEN' on /_mock/",
    "seed_file": "JSON or YAML file of settings objects and users to start from",
    "journal_size": "how many API calls the request journal keeps (default 1000)",
    "test_mail_record_size": "how many test-mail attempts the record keeps (default 100)",
    "password_verifications": "password verifications that may run at once (default 2)",
    "max_fault_rules": "how many fault rules may exist at once (default 100)",
    "max_state_users": "how many users a state import may hold (default 1000)",
    "https_port": "also serve HTTPS on this port (22016 in the image)",
    "certfile": "PEM certificate for HTTPS (default: a self-signed one beside the database)",
    "keyfile": "PEM private key for HTTPS",
    "workers": "uvicorn worker processes (default 1)",
    # The network edge (docs/security.md).
    "allowed_hosts": "also answer requests whose Host is NAME (repeatable; '*' any, "
    "'.example.com' a domain)",
    "no_control_token": "serve /_mock/ without a token even off loopback (a trusted network)",
    "forwarded_allow_ips": "trust X-Forwarded-For/-Proto only from these proxy addresses, "
    "comma-separated (default none)",
    "head_timeout": "seconds for a request line and headers to arrive (default 10)",
    "body_idle_timeout": "seconds a request body may pause between bytes (default 10)",
    "body_timeout": "seconds a whole request body may take (default 60)",
    "idle_timeout": "seconds a connection may wait for its next request, after the TLS "
    "handshake too (default 5)",
    "max_connections": "open connections answered; more get 503 (default 1000, lowered to "
    "fit the descriptor limit)",
    "worker_deaths_per_minute": "with --workers, stop when more workers die in a minute "
    "(default 5)",
}
# Settings whose options are not the generic `--name VALUE`.
_OWN_FLAGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "allowed_hosts": (
        ("--allowed-host", "--allowed-hosts"),
        {"action": "append", "metavar": "NAME"},
    ),
    "no_control_token": (("--no-control-token",), {"action": "store_true", "default": None}),
}


# One reason not to start, printed on one line; the serving layer raises it too.
CliError = StartError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit with status 2."""
        self.exit(2, f"analytics-mock: error: {message} (see {self.prog} --help)\n")


def _add_settings_options(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        env = f"ANALYTICS_MOCK_{name.upper()}"
        help_text = f"{_HELP.get(name, name)} [env {env}]"
        if name in _OWN_FLAGS:
            flags, options = _OWN_FLAGS[name]
            parser.add_argument(*flags, dest=name, help=help_text, **options)
        elif field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            # Values are checked by Settings, so an option and its variable fail alike.
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the options given on the command line."""
    given: dict[str, Any] = {
        name: value
        for name, value in vars(args).items()
        if name in Settings.model_fields and value is not None
    }
    try:
        return Settings(**given)
    except ValidationError as exc:
        # Never echo the input: it may be a secret.
        first = exc.errors(include_input=False, include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "configuration"
        where = "--" + name.replace("_", "-") if name in given else f"ANALYTICS_MOCK_{name.upper()}"
        raise CliError(f"invalid {where}: {first['msg']}") from None


def _serve(args: argparse.Namespace) -> int:
    # Importing the server stack and building the app make ~160,000 tracked objects and almost
    # no garbage: collecting while they run costs a start ~5 % of its CPU time. `serve` turns
    # collection back on once the app is built; the `finally` covers a start that fails.
    gc.disable()
    try:
        from analytics_mock.logs import configure_logging  # noqa: PLC0415
        from analytics_mock.services.journal import redact_text  # noqa: PLC0415
        from analytics_mock.serving import serve  # noqa: PLC0415 - only `serve` needs it

        settings = settings_from_args(args)
        configure_logging(settings.log_level, settings.log_format, redact_query=redact_text)
        serve(settings)
    finally:
        gc.enable()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from analytics_mock.db.engine import create_database_engine  # noqa: PLC0415
    from analytics_mock.db.migrate import upgrade_to_head  # noqa: PLC0415

    settings = settings_from_args(args)
    try:
        engine = create_database_engine(settings)
        try:
            upgrade_to_head(engine)
        finally:
            engine.dispose()
    except DATABASE_ERRORS as exc:
        raise CliError(database_error(settings, exc)) from None
    print("database at the newest schema revision")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from analytics_mock.db.engine import Database, create_database_engine  # noqa: PLC0415
    from analytics_mock.db.migrate import is_at_head  # noqa: PLC0415
    from analytics_mock.services.users import unlock_user  # noqa: PLC0415

    settings = settings_from_args(args)
    sqlite_file = settings.sqlite_path()
    if sqlite_file is not None and not sqlite_file.exists():
        raise CliError(f"no database at {sqlite_file} (start the server once, or migrate)")
    try:
        db = Database(create_database_engine(settings), timeout=settings.database_timeout)
        try:
            with db.session(write=True) as session:
                if not is_at_head(session.connection()):
                    raise CliError("the database is not at the newest schema: run migrate")
                found = unlock_user(session, args.name)
        finally:
            db.dispose()
    except DATABASE_ERRORS as exc:
        raise CliError(database_error(settings, exc)) from None
    if not found:
        raise CliError(f"no user called {args.name!r}")
    print(f"unlocked {args.name}")
    return 0


def _hash_password(_args: argparse.Namespace) -> int:
    from analytics_mock.passwords import hash_password  # noqa: PLC0415

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\r\n")
    if not password:
        raise CliError("empty password")
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = _Parser(
        prog="analytics-mock",
        description="Emulator of the Hitachi Ops Center Analyzer email server settings API.",
    )
    parser.add_argument("--version", action="version", version=f"analytics-mock {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    _add_settings_options(serve, list(Settings.model_fields))
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="bring the database schema to the newest revision"
    )
    _add_settings_options(migrate, ["database_url"])
    migrate.set_defaults(handler=_migrate)

    users = commands.add_parser("users", help="manage accounts")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    unlock = user_commands.add_parser("unlock", help="unlock an account locked by failed logins")
    unlock.add_argument("name")
    _add_settings_options(unlock, ["database_url"])
    unlock.set_defaults(handler=_unlock)

    hasher = commands.add_parser(
        "hash-password", help="print a hash for a users file (password read from stdin)"
    )
    hasher.set_defaults(handler=_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except CliError as exc:
        print(f"analytics-mock: error: {exc}", file=sys.stderr)
        return 2
    return status
