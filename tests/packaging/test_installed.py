"""The installed package is whole: every module imports with only the declared dependencies, the schemas
travel inside it, and the command runs.

`.ci/run` runs this file a second time from a fresh virtualenv that holds only the built wheel (and
pytest), outside the checkout, with BULKMIG_CHECKOUT set: there an import that pyproject.toml does not
declare, or a file the wheel does not ship, fails here instead of on a user's machine.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import bulkmig

# Modules that need an optional extra, by the extra that brings what they import.
OPTIONAL: dict[str, str] = {}


def _modules() -> list[str]:
    """Every module of the package but ``__main__`` (importing it runs the command; see the last test)."""
    names = (m.name for m in pkgutil.walk_packages(bulkmig.__path__, "bulkmig."))
    return sorted(n for n in names if not n.endswith(".__main__"))


def test_package_is_the_installed_one() -> None:
    checkout = os.environ.get("BULKMIG_CHECKOUT")
    if not checkout:
        pytest.skip("checks the wheel only when .ci/run points BULKMIG_CHECKOUT at the checkout")
    where = Path(bulkmig.__file__).resolve()
    assert not where.is_relative_to(Path(checkout).resolve()), f"imported {where} from the checkout, not the wheel"


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_walk_found_the_whole_package() -> None:
    names = _modules()
    for expected in ("bulkmig.cli", "bulkmig.engines.postgres.binary", "bulkmig.volume.verify"):
        assert expected in names
    assert len(names) > 60


def test_schemas_ship_inside_the_package() -> None:
    from bulkmig.core.manifest import SCHEMAS_DIR, validate_document

    shipped = resources.files("bulkmig.manifests")
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".schema.json"))
    for expected in ("part", "volume", "plan", "batch", "stream", "task", "assessment", "check"):
        assert f"{expected}.schema.json" in names
        json.loads((shipped / f"{expected}.schema.json").read_text(encoding="utf-8"))
    assert str(SCHEMAS_DIR) == str(shipped)
    example = json.loads((shipped / "examples" / "part.json").read_text(encoding="utf-8"))
    validate_document(example, "part")


def test_command_and_module_entry_points() -> None:
    version = subprocess.run([sys.executable, "-m", "bulkmig", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"bulkmig {bulkmig.__version__}"
