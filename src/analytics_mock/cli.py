"""The `analytics-mock` command: serve, migrate, users unlock, hash-password."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from analytics_mock import __version__
from analytics_mock.settings import Settings

logger = logging.getLogger("analytics_mock")

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
    "sqlite_synchronous": "SQLite synchronous pragma (default FULL: every commit is on disk)",
    "test_mail_mode": "smtp (really deliver test mails) or capture (only record them)",
    "smtp_timeout": "seconds a whole test-mail attempt may take (default 10)",
    "smtp_connect_timeout": "seconds to connect to the SMTP server (default 10)",
    "smtp_ca_file": "extra CA bundle to trust for the SMTP server's certificate",
    "smtp_verify_tls": "verify the SMTP server's certificate (default on)",
    "control_api": "serve the test controls under /_mock/ (default on)",
    "control_token": "require 'Authorization: Bearer TOKEN' on /_mock/",
    "seed_file": "JSON or YAML file of settings objects and users to start from",
    "journal_size": "how many API calls the request journal keeps (default 1000)",
    "https_port": "also serve HTTPS on this port (22016 in the image)",
    "certfile": "PEM certificate for HTTPS (default: a self-signed one beside the database)",
    "keyfile": "PEM private key for HTTPS",
    "workers": "uvicorn worker processes (default 1)",
}


_CHOICES = {"log_level", "log_format", "test_mail_mode", "sqlite_synchronous"}


class CliError(Exception):
    """A one-line reason to stop, printed without a traceback."""


def _add_settings_options(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        env = f"ANALYTICS_MOCK_{name.upper()}"
        help_text = f"{_HELP.get(name, name)} [env {env}]"
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            choices = get_args(field.annotation) if name in _CHOICES else None
            parser.add_argument(
                flag, dest=name, metavar=name.upper(), help=help_text, choices=choices
            )


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
        option = "--" + name.replace("_", "-")
        raise CliError(
            f"invalid {option} (or ANALYTICS_MOCK_{name.upper()}): {first['msg']}"
        ) from None


def _serve(args: argparse.Namespace) -> int:
    from analytics_mock.logs import configure_logging  # noqa: PLC0415
    from analytics_mock.serving import serve  # noqa: PLC0415 - only `serve` needs the server stack

    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    for name, value in settings.masked().items():
        logger.info("config %s = %s", name, value, extra={"setting": name, "value": value})
    serve(settings)
    return 0


def _database_error(settings: Settings, exc: BaseException) -> str:
    url = make_url(settings.database_url_text).render_as_string(hide_password=True)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"cannot open the database {url}: {detail[0] if detail else type(exc).__name__}"


def _migrate(args: argparse.Namespace) -> int:
    from analytics_mock.db.engine import create_database_engine  # noqa: PLC0415
    from analytics_mock.db.migrate import upgrade_to_head  # noqa: PLC0415

    settings = settings_from_args(args)
    engine = create_database_engine(settings)
    try:
        upgrade_to_head(engine)
    except SQLAlchemyError as exc:
        raise CliError(_database_error(settings, exc)) from None
    finally:
        engine.dispose()
    print("database at the newest schema revision")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from analytics_mock.db.engine import Database, create_database_engine  # noqa: PLC0415
    from analytics_mock.services.users import unlock_user  # noqa: PLC0415

    settings = settings_from_args(args)
    db = Database(create_database_engine(settings))
    try:
        with db.session(write=True) as session:
            found = unlock_user(session, args.name)
    except SQLAlchemyError as exc:
        raise CliError(_database_error(settings, exc)) from None
    finally:
        db.dispose()
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
    parser = argparse.ArgumentParser(
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
