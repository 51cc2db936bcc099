"""Commands to devices: send one (operator, to a device in their scope; audited), read a device's command
history (within the caller's scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api.auth import OperatorDep, PrincipalDep
from api.errors import ErrorBody, error_responses
from api.state import ConnDep, StateDep
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from devices.downlink import CommandRecord, create_command, list_commands, mark_command
from devices.registry import get_device

router = APIRouter(prefix="/devices", tags=["commands"])


class CommandCreate(BaseModel):
    name: str = Field(description="set_interval, reboot or ping")
    params: dict[str, object] = Field(default_factory=dict, description='set_interval: {"seconds": 60}')


class CommandPublic(BaseModel):
    command_id: str
    device_id: str
    name: str
    params: dict[str, object]
    status: str
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    detail: str
    actor: str


def _public(c: CommandRecord) -> CommandPublic:
    return CommandPublic.model_validate(c, from_attributes=True)


@router.post(
    "/{device_id}/commands",
    status_code=202,
    responses={
        **error_responses(Unauthenticated, Forbidden, NotFound, Conflict, InvalidRequest),
        503: {"model": ErrorBody, "description": "this API runs without a broker connection"},
    },
)
def send_command(
    conn: ConnDep, state: StateDep, principal: OperatorDep, device_id: str, body: CommandCreate
) -> CommandPublic:
    """Record the command, publish it on the device's `cmd` topic (QoS 1); the ack arrives later."""
    if state.commands is None:
        raise HTTPException(status_code=503, detail="this API runs without a broker connection")
    command, device = create_command(
        conn,
        device_id=device_id,
        name=body.name,
        params=body.params,
        actor=principal.actor,
        scope=principal.scope,
        address=principal.address,
    )
    conn.commit()  # recorded before it is sent: a fast ack always finds its command
    if state.commands.send(device, command):
        command = mark_command(conn, command.command_id, status="sent")
    else:
        command = mark_command(conn, command.command_id, status="failed", detail="broker did not accept the command")
    conn.commit()
    return _public(command)


@router.get("/{device_id}/commands", responses=error_responses(Unauthenticated, NotFound))
def read_commands(
    conn: ConnDep, principal: PrincipalDep, device_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[CommandPublic]:
    """The device's commands, newest first."""
    get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when unknown or not in scope
    return [_public(c) for c in list_commands(conn, device_id, scope=principal.scope, limit=limit)]
