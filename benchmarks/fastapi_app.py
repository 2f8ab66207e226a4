"""`baseline_app.py --fastapi`: the baseline's work through FastAPI routes.

A GET list route and a PUT route whose body is a Pydantic model and whose Authorization header
is a declared parameter: the issue's "FastAPI route with nothing behind it". No postponed
annotations here, so that FastAPI sees the model class of a route defined in a function.
"""

from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel


class Update(BaseModel):
    """The members the benchmark's PUT sends."""

    hostname: str | None = None
    portNumber: int | None = None  # noqa: N815 - the API's member name


def build(expected_auth: str, answer: dict[str, Any]) -> FastAPI:
    """The app: 200 and `answer` (updated by a PUT's members), 401 without `expected_auth`."""
    api = FastAPI()

    @api.get("/Analytics/v1/objects/EmailServerSettings")
    async def listing(authorization: str = Header("")) -> dict[str, Any]:
        if authorization != expected_auth:
            raise HTTPException(401)
        return answer

    @api.put("/Analytics/v1/objects/EmailServerSettings/{instance_id}")
    async def update(
        instance_id: str, body: Update, authorization: str = Header("")
    ) -> dict[str, Any]:
        if authorization != expected_auth:
            raise HTTPException(401)
        return {**answer, "instanceID": instance_id, **body.model_dump(exclude_none=True)}

    return api
