"""The wire libraries bridge reaches into are the versions it was written and tested against.

`bridge/protocol/*shim.py` use internals of h2, hpack, hyperframe, aioquic and httptools (or,
for httptools, the wording of its errors). `pyproject.toml` states the tested range of each,
once; this test reads it there and fails, naming the library, the installed version and the
range, when an installed version is outside it: the shim must be checked against the new
release before the range is widened.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SHIMS = ROOT / "bridge" / "protocol"
# Each library and the shim that holds what bridge uses of it beyond its public API.
SHIM_OF = {
    "h2": "h2shim.py",
    "hpack": "h2shim.py",
    "hyperframe": "h2shim.py",
    "ngh2": "ngh2shim.py",
    "aioquic": "quicshim.py",
    "httptools": "httptoolsshim.py",
}


def version_ranges() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = (Requirement(line) for line in project["dependencies"])
    return {canonicalize_name(req.name): req for req in found}


def out_of_range(library: str, installed: str, requirement: Requirement) -> str | None:
    """Why `installed` may not be used, or None when it is inside the tested range."""
    if requirement.specifier.contains(installed, prereleases=True):
        return None
    return (
        f"{library} {installed} is installed, but bridge is tested with "
        f"{library}{requirement.specifier} (pyproject.toml). bridge/protocol/"
        f"{SHIM_OF[library]} relies on {library}'s internals: check it against "
        f"{library} {installed}, then widen the range there."
    )


@pytest.mark.parametrize("library", sorted(SHIM_OF))
def test_installed_version_is_in_the_tested_range(library: str) -> None:
    requirement = version_ranges().get(library)
    assert requirement is not None, f"pyproject.toml does not list {library}"
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
        f"pyproject.toml does not bound {library} from above: {requirement}"
    )
    problem = out_of_range(library, version(library), requirement)
    assert problem is None, problem


@pytest.mark.parametrize("library", sorted(SHIM_OF))
def test_each_shim_names_a_version_inside_its_range(library: str) -> None:
    """The version a shim says it was written against is one the range admits."""
    text = (SHIMS / SHIM_OF[library]).read_text()
    written = re.search(rf"\b{library} (\d+\.\d+\.\d+)", text)
    assert written is not None, f"{SHIM_OF[library]} does not name the {library} version"
    assert out_of_range(library, written[1], version_ranges()[library]) is None


def test_a_version_outside_the_range_is_named() -> None:
    problem = out_of_range("h2", "4.5.0", Requirement("h2>=4.1,<4.5"))
    assert problem is not None
    assert "h2 4.5.0 is installed" in problem
    assert "h2<4.5,>=4.1 (pyproject.toml)" in problem
    assert "h2shim.py" in problem
    assert out_of_range("h2", "4.4.1", Requirement("h2>=4.1,<4.5")) is None
