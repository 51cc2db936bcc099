"""The project's error tree: every package may import it; it imports nothing of ours.

Categories say what went wrong from the caller's point of view, without naming a transport:
`NotFound`, `Conflict` and `InvalidRequest`; for access, `Unauthenticated`, `Forbidden` and `TooManyRequests`;
`Busy` when the center cannot take the work now. A domain error that a caller can cause derives from one of
them (`UnknownDevice` is a `NotFound`), so the API maps categories to status codes once, in `api.errors`.
Its message is written for that caller: the API returns it as it is.
"""


class IocError(Exception):
    """Base of every error ioc raises on purpose."""


class NotFound(IocError):
    """The thing the caller named does not exist (or no longer counts as existing)."""


class Conflict(IocError):
    """The request is well formed but clashes with the current state: a duplicate id, an alarm already
    cleared, a device that is decommissioned."""


class InvalidRequest(IocError):
    """The request's values are not acceptable: an unknown type or province, a value out of range."""


class Unauthenticated(IocError):
    """The caller did not say who they are, or said it with a wrong password or an unknown, expired or revoked
    token."""


class Forbidden(IocError):
    """The caller is known but may not do this: a role too low, or a province or sector outside their scope."""


class TooManyRequests(IocError):
    """The caller failed too often (bad logins, unknown tokens); `retry_after_s` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Busy(IocError):
    """The center cannot take this work now (not the caller's fault); `retry_after_s` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DecodeError(IocError):
    """A payload or topic that does not follow the wire contract; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ValidationError(IocError):
    """A decoded message that the device type does not allow; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class UnknownDevice(NotFound):
    """A device id that is not in the registry (or is decommissioned): `UnknownDevice(device_id)`."""

    def __init__(self, device_id: str) -> None:
        # args stay (device_id,) so that the error pickles and compares as before; the message is __str__.
        super().__init__(device_id)
        self.device_id = device_id

    def __str__(self) -> str:
        return f"unknown device {self.device_id!r}"


class StorageError(IocError):
    """The database refused or lost a write or a read."""


class RuntimeServiceError(IocError):
    """An embedded service (broker, database) could not be installed, started or stopped."""
