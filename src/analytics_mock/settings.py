"""Server configuration: one env prefix, `ANALYTICS_MOCK_`, one cached `get_settings()`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

DEFAULT_DATABASE_URL = "sqlite:///analytics-mock.db"
_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "sslpassword"}


def mask_database_url(text: str) -> str:
    """The URL with its password hidden, in the user-info part and in the query alike."""
    try:
        url = make_url(text)
    except ArgumentError:
        return "(not a database URL)"
    hidden = {key: "***" for key in url.query if key.lower() in _SECRET_QUERY_KEYS}
    return url.update_query_dict(hidden).render_as_string(hide_password=True)


class Settings(BaseSettings):
    """Every option of `analytics-mock serve`; each is also `ANALYTICS_MOCK_<NAME>`."""

    # An empty variable counts as unset, so `-e ANALYTICS_MOCK_HTTPS_PORT=` turns HTTPS off.
    model_config = SettingsConfigDict(
        env_prefix="ANALYTICS_MOCK_", extra="ignore", env_ignore_empty=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=22015, ge=0, le=65535)
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    users_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # The vendor's account.lock.num: consecutive failed logins before a lock, 0 = never.
    account_lock_num: int = Field(default=0, ge=0, le=10)
    lock_system_account: bool = False
    session_timeout: float = Field(default=1000.0, gt=0)
    max_body_size: int = Field(default=1024 * 1024, ge=1)
    maintenance: bool = False
    # Key for the stored SMTP password; without it a key file is created (see `key_file_path`).
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    sqlite_wal_size_limit: int = Field(default=16 * 1024 * 1024, ge=0)
    # A network database that stops answering must not hold a call for ever.
    database_timeout: float = Field(default=10.0, gt=0, le=3600)
    # Test mail (sendTestMail).
    test_mail_mode: Literal["smtp", "capture"] = "smtp"
    smtp_timeout: float = Field(default=10.0, gt=0, le=600)
    smtp_connect_timeout: float = Field(default=10.0, gt=0, le=600)
    smtp_ca_file: Path | None = None
    smtp_verify_tls: bool = True
    # Test controls under /_mock/.
    control_api: bool = True
    control_token: SecretStr | None = None
    seed_file: Path | None = None
    journal_size: int = Field(default=1000, ge=0, le=1_000_000)
    test_mail_record_size: int = Field(default=100, ge=1, le=100_000)
    password_verifications: int = Field(default=2, ge=1, le=64)
    max_fault_rules: int = Field(default=100, ge=1, le=10_000)
    max_state_users: int = Field(default=1000, ge=1, le=100_000)
    # Serving.
    https_port: int | None = Field(default=None, ge=0, le=65535)
    certfile: Path | None = None
    keyfile: Path | None = None
    workers: int = Field(default=1, ge=1, le=64)
    # The network edge (docs/security.md): who may call, and how long a connection may take.
    # Names the Host header may carry besides loopback ones; "*" allows any, ".example.com"
    # that domain and its subdomains. Comma-separated in the environment.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Off a loopback bind, no --control-token makes one up; this serves /_mock/ without any.
    no_control_token: bool = False
    # Proxies whose X-Forwarded-For/-Proto are believed: comma-separated addresses or
    # networks, "*" for any; none by default.
    forwarded_allow_ips: str | None = None
    head_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_idle_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=60.0, gt=0, le=3600)
    idle_timeout: float = Field(default=5.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # The supervisor of --workers gives up when more workers than this die in one minute.
    worker_deaths_per_minute: int = Field(default=5, ge=1, le=1000)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(item).strip().lower() for item in value if str(item).strip()]
        return value

    @field_validator("log_level", "log_format", "test_mail_mode", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _parse_url(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a SQLAlchemy database URL") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite and postgresql URLs are supported")
        return value

    @property
    def database_url_text(self) -> str:
        """The database URL in clear, for the engine only."""
        return self.database_url.get_secret_value()

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for an in-memory or non-SQLite database."""
        url = make_url(self.database_url_text)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(url.database)
        return None

    def key_file_path(self) -> Path:
        """Where the SMTP password key lives when no `secret_key` is given: beside a SQLite file."""
        if self.secret_key_file is not None:
            return self.secret_key_file
        db_path = self.sqlite_path()
        if db_path is not None:
            return db_path.with_name(db_path.name + ".key")
        return Path("analytics-mock.key")

    def masked(self) -> dict[str, object]:
        """The effective configuration with every secret masked, for the start-up banner."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                value = mask_database_url(self.database_url_text)
            elif isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = ",".join(value)
            shown[name] = value
        return shown


class StartError(Exception):
    """A one-line reason not to start, printed without a traceback."""


# What can go wrong opening a database: a bad URL, a driver that is not installed, a path that
# cannot be created, a server that does not answer.
DATABASE_ERRORS = (SQLAlchemyError, OSError, ImportError)


def database_error(settings: Settings, exc: BaseException) -> str:
    """One line on why the database cannot be opened, never with its password."""
    url = mask_database_url(settings.database_url_text)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    # A driver may quote the URL it was given; never let it show a password.
    password = _url_password(settings)
    reason = detail[0] if detail else type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    return f"cannot open the database {url}: {reason}"


def _url_password(settings: Settings) -> str | None:
    url = make_url(settings.database_url_text)
    secret = url.password or url.query.get("password")
    return secret if isinstance(secret, str) and secret else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
