"""The messaging library and the shared plumbing know no domain app: not by import (the
import-linter contracts in pyproject.toml, run by `make test`), and not by name either, in a
dotted string, a comment or an example."""

import re
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _domain_apps() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (independence,) = [c for c in config["contracts"] if c["type"] == "independence"]
    return independence["modules"]


@pytest.mark.parametrize("package", ["kafka_bridge", "common"])
def test_platform_code_names_no_domain_app(package: str) -> None:
    # Given the domain apps' names
    names = re.compile(rf"\b({'|'.join(map(re.escape, _domain_apps()))})\b")

    # When every source file of the platform package is read (its tests excepted)
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / package).rglob("*"))
        if path.suffix in {".py", ".html", ".txt"} and "tests" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if names.search(line)
    ]

    # Then none names one
    assert found == []
