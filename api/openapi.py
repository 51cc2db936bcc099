"""The API's OpenAPI document, made to tell the truth: the bearer security scheme, declared once for every
operation (the open ones say `security: []`), and the answers every route can give that FastAPI does not
list by itself: 401, 403 and 429 from authentication, 400 and 422 from reading the request. Built once, on first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.errors import ErrorBody, FieldProblems

BEARER_SCHEME: Final = "HTTPBearer"
_SCHEMAS: Final = "#/components/schemas/"
_JSON: Final = "application/json"

_UNAUTHENTICATED: Final = "Unauthorized: no token, or an unknown, expired or revoked one (`detail` says which)"
_THROTTLED: Final = (
    "Too many requests: this address sent too many unknown tokens lately; try again after `Retry-After` seconds"
)
_FORBIDDEN: Final = "Forbidden: the token's role may not do this (`detail` names the role needed)"
_UNREADABLE_BODY: Final = "Bad request: the body could not be read as JSON (not UTF-8, or nested too deep)"
_UNPROCESSABLE: Final = (
    "Unprocessable: a value is not acceptable (`detail` says which, e.g. a NUL character in a text field), "
    "or the request does not validate (`detail` lists the fields)"
)


def _error_schema(name: str) -> dict[str, Any]:
    return {"content": {_JSON: {"schema": {"$ref": f"{_SCHEMAS}{name}"}}}}


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependencies(sub)


def _checks_role(route: APIRoute) -> bool:
    """True when one of the route's dependencies is a role check made by `api.auth.require_role` (403)."""
    return any(
        getattr(d.call, "__module__", None) == "api.auth"
        and getattr(d.call, "__qualname__", "").startswith("require_role.")
        for d in _dependencies(route.dependant)
    )


def _role_checked_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every documented operation that checks the caller's role."""
    return {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema and _checks_role(route)
        for method in route.methods or ()
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for `app`, completed as the module says."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ErrorBody, FieldProblems):
        schema = model.model_json_schema(ref_template=f"{_SCHEMAS}{{model}}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)
    # FastAPI's own name for its validation answer, kept so that generated clients keep their type name; it now
    # says what a 422 can be: our message, or FastAPI's list of fields (FieldProblem replaces ValidationError).
    schemas.pop("ValidationError", None)
    schemas["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "anyOf": [{"$ref": f"{_SCHEMAS}ErrorBody"}, {"$ref": f"{_SCHEMAS}FieldProblems"}],
    }
    # The requirement FastAPI wrote on most operations (the bearer dependency of api.auth) becomes the document's;
    # an operation without one is open and says so.
    operations = [
        (path, method, operation)
        for path, by_method in document.get("paths", {}).items()
        for method, operation in by_method.items()
    ]
    shared = _most_common([op["security"] for _, _, op in operations if op.get("security")])
    if shared is None:  # no route is secured yet: still say how a client would authenticate
        schemes = components.setdefault("securitySchemes", {})
        schemes.setdefault(BEARER_SCHEME, {"type": "http", "scheme": "bearer"})
        shared = [{BEARER_SCHEME: []}]
    document["security"] = shared

    role_checked = _role_checked_operations(app)
    for path, method, operation in operations:
        responses = operation.setdefault("responses", {})
        requirement = operation.get("security")
        if not requirement:
            operation["security"] = []  # open: the probes, the login
        else:
            if requirement == shared:
                del operation["security"]
            responses.setdefault("401", {"description": _UNAUTHENTICATED, **_error_schema("ErrorBody")})
            responses.setdefault("429", {"description": _THROTTLED, **_error_schema("ErrorBody")})
        if (path, method) in role_checked:
            responses.setdefault("403", {"description": _FORBIDDEN, **_error_schema("ErrorBody")})
        if _takes_json_body(operation):
            responses.setdefault("400", {"description": _UNREADABLE_BODY, **_error_schema("ErrorBody")})
        # Any text in the path, the query or the body may be refused (api.request_text), so every operation can
        # answer 422; its body is one of the two shapes HTTPValidationError now names.
        responses["422"] = {"description": _UNPROCESSABLE, **_error_schema("HTTPValidationError")}
        operation["responses"] = dict(sorted(responses.items()))
    return document


def _most_common(requirements: list[list[dict[str, list[str]]]]) -> list[dict[str, list[str]]] | None:
    counted: list[tuple[int, list[dict[str, list[str]]]]] = []
    for requirement in requirements:
        if all(requirement != seen for _, seen in counted):
            counted.append((requirements.count(requirement), requirement))
    return max(counted, key=lambda pair: pair[0])[1] if counted else None


def _takes_json_body(operation: dict[str, Any]) -> bool:
    return _JSON in operation.get("requestBody", {}).get("content", {})


def use_truthful_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json, /docs, /redoc) serve `build_openapi(app)`, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
