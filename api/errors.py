"""Errors over HTTP: the one place where the error tree's categories become status codes.

Routes raise (or let through) domain errors; `register_error_handlers` answers them with the category's status
and `{"detail": message}`, the body FastAPI's HTTPException gives, so no route maps errors itself.
`error_responses(...)` documents the same codes in a route's OpenAPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import Conflict, InvalidRequest, IocError, NotFound

ERROR_STATUS: Final[Mapping[type[IocError], int]] = {
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 422,
}

_DESCRIPTIONS: Final[Mapping[type[IocError], str]] = {
    NotFound: "Not found: what the path names (a device, an alarm) does not exist",
    Conflict: "Conflict: the request clashes with the current state (duplicate id, alarm already cleared, "
    "device decommissioned)",
    InvalidRequest: "Unprocessable: a value is not acceptable (`detail` says which), or the request does not "
    "validate (`detail` lists the fields)",
}


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong, for a person to read")


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldProblems(BaseModel):
    """FastAPI's own answer when the request does not validate (a missing field, a wrong type)."""

    detail: list[FieldProblem]


def status_for(exc: IocError) -> int | None:
    """The status code of `exc`'s category, or None when it has none (a bug or an outage, not the caller's)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return None


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IocError)  # registered for the categories only
    status = status_for(exc)
    assert status is not None
    return JSONResponse(status_code=status, content={"detail": str(exc)})


def register_error_handlers(app: FastAPI) -> None:
    """Answer every categorized domain error with its status code and message; called once by `create_app`."""
    for category in ERROR_STATUS:
        app.add_exception_handler(category, _answer)


def error_responses(*categories: type[IocError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the categories a route can answer with."""
    responses: dict[int | str, dict[str, Any]] = {}
    for category in categories:
        model: Any = ErrorBody | FieldProblems if category is InvalidRequest else ErrorBody
        responses[ERROR_STATUS[category]] = {"model": model, "description": _DESCRIPTIONS[category]}
    return responses
