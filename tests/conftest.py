"""Suite-wide pytest hooks: every test under tests/integration carries the `integration` marker.

`pytestmark` in a conftest marks nothing, so the marker is added here by path: `pytest -m "not integration"`
then runs only the unit tests, and a new integration module is marked without anyone remembering to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_INTEGRATION_DIR = Path(__file__).parent / "integration"


# tryfirst: the marker must be on the items before `-m` deselects by it.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)
