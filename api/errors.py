"""Errors over HTTP: the one place where the error tree's categories become status codes.

Routes raise (or let through) domain errors; `register_error_handlers` answers them with the category's status
and `{"detail": message}`, the body FastAPI's HTTPException gives, so no route maps errors itself.
`error_responses(...)` documents the same codes in a route's OpenAPI.

Two safety nets keep anything else from reaching the client as a stack trace: a psycopg `DataError` (a request's
value the database refuses, such as an integer of 2^63 where a bigint goes) is a 422, and anything unexpected is a
500 `{"detail": "internal error"}` with a log line. Text the database cannot hold is refused before routing
(`api.request_text`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import (
    Busy,
    Conflict,
    Forbidden,
    InvalidRequest,
    IocError,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)

_LOGGER = logging.getLogger(__name__)

ERROR_STATUS: Final[Mapping[type[IocError], int]] = {
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    TooManyRequests: 429,
    Busy: 503,
}

_DESCRIPTIONS: Final[Mapping[type[IocError], str]] = {
    NotFound: "Not found: what the path names (a device, an alarm) does not exist",
    Conflict: "Conflict: the request clashes with the current state (duplicate id, alarm already cleared, "
    "device decommissioned)",
    InvalidRequest: "Unprocessable: a value is not acceptable (`detail` says which), or the request does not "
    "validate (`detail` lists the fields)",
    Unauthenticated: "Unauthorized: no token, a wrong password, or an unknown, expired or revoked token",
    Forbidden: "Forbidden: the caller's role or province/sector scope does not allow this",
    TooManyRequests: "Too many failures (bad logins or unknown tokens): wait `Retry-After` seconds",
    Busy: "Busy: the center cannot take this now (e.g. too many password checks at once): retry after `Retry-After` "
    "seconds",
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
    return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=_headers(exc))


def _headers(exc: IocError) -> dict[str, str] | None:
    """The headers RFC 9110 asks for: a challenge with 401, when to retry with 429 and 503."""
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, TooManyRequests | Busy):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return None


async def _answer_data_error(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value of the request (PostgreSQL's class 22, data exception): the caller's to fix.
    Routes bound their parameters; this catches what a bound missed."""
    assert isinstance(exc, psycopg.DataError)
    reason = exc.diag.message_primary or str(exc).splitlines()[0]
    _LOGGER.warning("%s %s: the database refused a value: %s", request.method, request.url.path, reason)
    return JSONResponse(status_code=422, content={"detail": f"a value is out of range or malformed: {reason}"})


# Issue 14 (hardening): the database is down or unreachable, or no pooled connection came within the API's timeout.
DATABASE_RETRY_AFTER_S = 5


async def _answer_database_down(request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (psycopg's OperationalError, the pool's PoolTimeout among them): 503 at once
    with a clear message, instead of a hang or a 500; the cause goes to the log only."""
    _LOGGER.warning("%s %s: database unavailable: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; try again shortly"},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _answer_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug or an outage: the client learns nothing of the inside. The traceback goes to the server's log only
    (Starlette raises the exception again after this answer, and uvicorn logs it)."""
    _LOGGER.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


def register_error_handlers(app: FastAPI) -> None:
    """Answer every categorized domain error with its status code and message, a value the database refuses with
    422 and anything else with a plain 500; called once by `create_app`."""
    for category in ERROR_STATUS:
        app.add_exception_handler(category, _answer)
    app.add_exception_handler(psycopg.DataError, _answer_data_error)
    app.add_exception_handler(psycopg.OperationalError, _answer_database_down)  # issue 14
    app.add_exception_handler(Exception, _answer_unexpected)


def error_responses(*categories: type[IocError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the categories a route can answer with."""
    responses: dict[int | str, dict[str, Any]] = {}
    for category in categories:
        model: Any = ErrorBody | FieldProblems if category is InvalidRequest else ErrorBody
        responses[ERROR_STATUS[category]] = {"model": model, "description": _DESCRIPTIONS[category]}
    return responses
