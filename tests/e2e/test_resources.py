"""Resources found honestly (issue 14, item 6), from a wheel installed outside any checkout.

An ENV that is not a local file comes from the shipped examples only with a line saying so; `validate` and
`-p` take paths and names in every directory; the README's host-free examples work from any directory.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cliutil import build_wheel, install_wheel, installed
from tests.conftest import ROOT

EXAMPLE = "using the example inventory shipped with remediate: "


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This tree's wheel installed in a directory of its own: what `pip install remediate` leaves."""
    out = tmp_path_factory.mktemp("wheel")
    yield install_wheel(build_wheel(out), out / "site")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory, nowhere near a checkout."""
    path = tmp_path / "ops"
    path.mkdir()
    return path


def test_an_env_from_the_shipped_examples_says_so(wheel: Path, elsewhere: Path) -> None:
    result = installed(wheel, "inventory", "staging", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith(f"remediate: {EXAMPLE}")]
    assert len(said) == 1, result.stderr
    assert said[0].endswith(str(wheel / "remediate" / "_data" / "inventory" / "staging.yml")), said


def test_a_local_inventory_is_used_without_a_word(wheel: Path, elsewhere: Path) -> None:
    (elsewhere / "inventory").mkdir()
    (elsewhere / "inventory" / "staging.yml").write_text("hosts:\n  mine:\n    connection: local\n")
    result = installed(wheel, "inventory", "staging", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert EXAMPLE not in result.stderr and "mine" in result.stdout


def test_a_missing_inventory_file_is_invalid_input(wheel: Path, elsewhere: Path) -> None:
    result = installed(wheel, "inventory", "staging", "-i", "./inventory/staging.yml", cwd=elsewhere)
    assert result.returncode == 3 and "staging.yml" in result.stderr, result.stderr


@pytest.mark.parametrize("name", [
    "playbooks/site.yml", "playbooks/celery-beat-database-scheduler.yml",
    "site", "site.yml", "celery-register-task-modules",
])
def test_validate_takes_paths_and_names_in_any_directory(wheel: Path, elsewhere: Path, name: str) -> None:
    result = installed(wheel, "validate", name, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert re.search(r": ok \(\d+ play\(s\), \d+ step\(s\)\)$", result.stdout.strip()), result.stdout


def test_a_local_playbook_wins_over_the_shipped_one(wheel: Path, elsewhere: Path) -> None:
    (elsewhere / "playbooks").mkdir()
    (elsewhere / "playbooks" / "site.yml").write_text(
        "- hosts: all\n  steps:\n    - name: mine\n      command: {argv: ['true']}\n")
    result = installed(wheel, "validate", "playbooks/site.yml", cwd=elsewhere)
    assert result.returncode == 0 and "1 play(s), 1 step(s)" in result.stdout, result.stdout + result.stderr


def test_p_takes_a_shipped_playbook_path_in_any_directory(wheel: Path, elsewhere: Path) -> None:
    result = installed(wheel, "apply", "staging", "-p", "playbooks/celery-beat-database-scheduler.yml",
                       "--list-tasks", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "beat" in result.stdout.lower() and EXAMPLE in result.stderr


def _readme_examples() -> list[str]:
    """The README's `remediate validate|inventory|schema|completion` command lines (they contact no host)."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = re.split(r"[>|]", line.split("#", 1)[0])[0].strip()  # the command, not where its output goes
            if re.match(r"remediate (validate|inventory|schema|completion)\b", command):
                lines.append(command)
    return lines


def test_the_readmes_host_free_examples_work_from_any_directory(wheel: Path, elsewhere: Path) -> None:
    examples = _readme_examples()
    assert any(e.startswith("remediate validate") for e in examples), examples
    for example in examples:
        result = installed(wheel, *shlex.split(example)[1:], cwd=elsewhere)
        assert result.returncode == 0, (example, result.stderr)
