"""`GET /audit`: the audit log for admins, filtered, newest first; a scoped admin sees the entries about devices in
their scope and their own actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import AdminDep
from api.errors import error_responses
from api.state import ConnDep
from core.errors import Forbidden, InvalidRequest, Unauthenticated
from devices.audit import list_audit

router = APIRouter(tags=["audit"])

AUDIT_LIMIT_MAX: Final = 1000
_TEXT_MAX: Final = 200


class AuditPublic(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="who: `user:<name>`, `key:<name>`, or a service (`ioc-analytics`, `cli`)")
    action: str = Field(description="what, e.g. `device.create`, `alarm.acknowledge`, `location.read`")
    target: str = Field(description="a device id, `alarm:<id>`, `key:<name>`, `user:<name>`")
    details: dict[str, object]
    address: str | None = Field(description="where the request came from, when it came over HTTP")


TextFilter = Annotated[str | None, Query(max_length=_TEXT_MAX)]


@router.get("/audit", responses=error_responses(Unauthenticated, Forbidden, InvalidRequest))
def read_audit_log(
    conn: ConnDep,
    principal: AdminDep,
    *,
    actor: TextFilter = None,
    action: TextFilter = None,
    target: TextFilter = None,
    start: Annotated[datetime | None, Query(alias="from", description="inclusive, with a timezone")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="exclusive, with a timezone")] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_LIMIT_MAX)] = 100,
) -> list[AuditPublic]:
    """Audit entries, newest first: who did what to which target, when and from where (admin)."""
    for value, name in ((start, "from"), (end, "to")):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"'{name}' needs a timezone, e.g. 2026-11-22T08:00:00Z")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("'from' must be before 'to'")
    entries = list_audit(
        conn,
        scope=principal.scope,
        own_actor=principal.actor,
        actor=actor,
        action=action,
        target=target,
        start=start,
        end=end,
        limit=limit,
    )
    return [AuditPublic.model_validate(e, from_attributes=True) for e in entries]
