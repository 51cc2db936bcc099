"""The dashboards' errors: a definition the SDK's types refuse, or a Grafana that refuses or cannot be reached."""

from __future__ import annotations

from core.errors import IocError


class DashboardsError(IocError):
    """A dashboard that does not validate, or a provisioning step Grafana refused; the message says which."""
