"""The project's error tree: every package may import it; it imports nothing of ours."""


class IocError(Exception):
    """Base of every error ioc raises on purpose."""


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


class UnknownDevice(IocError):
    """A device id that is not in the registry (or is decommissioned)."""


class StorageError(IocError):
    """The database refused or lost a write or a read."""


class RuntimeServiceError(IocError):
    """An embedded service (broker, database) could not be installed, started or stopped."""
