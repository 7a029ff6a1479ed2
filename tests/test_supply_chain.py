from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "supply_chain", Path(__file__).parent.parent / "scripts" / "supply_chain.py"
)
assert _spec is not None and _spec.loader is not None
supply_chain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(supply_chain)


@pytest.mark.parametrize(
    ("expression", "ok"),
    [
        ("MIT", True),
        ("Apache-2.0 AND BSD-2-Clause", True),
        ("CC0-1.0 OR Apache-2.0", True),
        ("Mozilla Public License 2.0 (MPL 2.0)", True),
        ("GPL-3.0-only", False),
        ("MIT AND GPL-2.0", False),
        ("UNKNOWN", False),
    ],
)
def test_license_allowlist(expression: str, ok: bool) -> None:
    """The allowlist accepts permissive licenses and refuses copyleft or unknown ones."""
    assert supply_chain.license_ok(expression) is ok
