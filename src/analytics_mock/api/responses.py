"""OpenAPI descriptions of the error responses each operation can give."""

from __future__ import annotations

from typing import Any

from analytics_mock.schemas.email_settings import ErrorBody

_DESCRIPTIONS = {
    400: "Bad Request: the body or a parameter is invalid.",
    401: "Unauthorized: no, wrong, expired or locked credentials.",
    403: "Forbidden: the user lacks the Admin permission.",
    404: "Not Found: no such object.",
    406: "Not Acceptable: the Accept header excludes application/json.",
    412: "Precondition Failed: the server is not available (maintenance).",
    413: "Payload Too Large: the body is over the size limit.",
    415: "Unsupported Media Type: the body is not sent as application/json.",
    500: "Internal Server Error.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries for `codes` (and 500), all in the vendor's error envelope."""
    return {
        code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in (*codes, 500)
    }
