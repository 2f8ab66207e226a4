"""Reading the operator's JSON or YAML files (users, seed) into validated models."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigFileError(ValueError):
    """A file cannot be read or does not validate; the text is one line and echoes no value."""


# The longest location an error message repeats: a member's name is the client's own, and may
# be a megabyte long.
_SHOWN_LOCATION = 100


def error_location(error: ErrorDetails) -> str:
    """Where a validation error points, as dotted names, shortened past `_SHOWN_LOCATION`."""
    location = ".".join(str(part) for part in error["loc"])
    return location if len(location) <= _SHOWN_LOCATION else location[:_SHOWN_LOCATION] + "..."


def first_problem(exc: ValidationError, *, where: str = "") -> str:
    """The first problem of a validation error, without the input (it may hold a secret).

    `where` names the validated document when it is part of a larger one.
    """
    first = exc.errors(include_input=False, include_url=False)[0]
    path = ".".join(part for part in (where, error_location(first)) if part) or "top level"
    return f"{path}: {first['msg']}"


def load_config_file(path: Path, model: type[ModelT], error: type[ConfigFileError]) -> ModelT:
    """`path` (JSON or YAML) validated as `model`; any problem raises `error`."""
    # Imported here: most servers read no file, and every start would otherwise pay for it.
    import yaml  # noqa: PLC0415

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid JSON or YAML: {type(exc).__name__}") from None
    try:
        return model.model_validate(document or {})
    except ValidationError as exc:
        raise error(f"{path}: {first_problem(exc)}") from None
