"""Editor and shell support (issue 14, item 8).

A JSON Schema for playbooks and for inventories, generated from the step definitions, shipped in the wheel and
printed by `remediate schema playbook|inventory`: it validates every shipped playbook and inventory and rejects a
misspelled step kind (what a YAML language server then underlines). Shell completion for bash and zsh, tried in
the real shells.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cliutil import build_wheel, cli_env
from tests.conftest import ROOT, remediate

PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml")) + sorted((ROOT / "tests" / "fixtures" / "playbooks").glob("*.yml"))
INVENTORIES = sorted((ROOT / "inventory").glob("*.yml"))


def schema(kind: str) -> dict[str, Any]:
    result = remediate("schema", kind)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def validator(kind: str) -> Any:
    import jsonschema

    doc = schema(kind)
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc)


def errors(check: Any, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(doc)]


def step_play(step: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "p", "hosts": "all", "steps": [step]}]


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_the_playbook_schema_validates_the_shipped_playbooks(path: Path) -> None:
    assert errors(validator("playbook"), yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.name)
def test_the_inventory_schema_validates_the_shipped_inventories(path: Path) -> None:
    assert errors(validator("inventory"), yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("step, bad", [
    ({"name": "s", "python_asignment": {"path": "/x.py", "name": "A", "value": 1}}, "python_asignment"),  # the kind
    ({"name": "s", "notfiy": ["h"], "command": {"argv": ["true"]}}, "notfiy"),                         # a step key
    ({"name": "s", "python_assignment": {"pth": "/x.py", "name": "A", "value": 1}}, "pth"),              # an argument
    ({"name": "s", "python_assignment": {"name": "A", "value": 1}}, "path"),                            # required
    ({"name": "s", "retries": "three", "command": {"argv": ["true"]}}, "three"),                        # a type
    ({"name": "s", "command": {"argv": ["true"]}, "lineinfile": {"path": "/x", "line": "y"}}, ""),      # two kinds
    ({"name": "s"}, ""),                                                                                 # no kind
])
def test_the_playbook_schema_rejects_mistakes(step: dict[str, Any], bad: str) -> None:
    found = errors(validator("playbook"), step_play(step))
    assert found, f"accepted {step}"
    assert any(bad in e for e in found), found


def test_templated_values_are_accepted_where_types_are_checked_after_rendering() -> None:
    step = {"name": "s", "retries": 3, "delay": 0.5, "command": {"argv": "{{ cmd }}", "timeout": "{{ t }}",
                                                                 "read_only": "{{ ro }}"}}
    assert errors(validator("playbook"), step_play(step)) == []


def test_the_inventory_schema_rejects_a_misspelled_host_key() -> None:
    found = errors(validator("inventory"), {"hosts": {"web-1": {"adress": "127.0.0.1"}}})
    assert any("adress" in e for e in found), found


def known_kinds(tmp_path: Path) -> list[str]:
    """Every step kind, as the loader names them when a step has none."""
    path = tmp_path / "nokind.yml"
    path.write_text("- hosts: all\n  steps:\n    - name: nothing\n")
    result = remediate("validate", str(path))
    assert result.returncode == 3 and "known kinds: " in result.stderr, result.stderr
    return [k.strip() for k in result.stderr.split("known kinds: ", 1)[1].split("\n")[0].split(",")]


def test_every_step_kind_is_in_the_schema_with_its_docs(tmp_path: Path) -> None:
    doc = schema("playbook")
    text = json.dumps(doc)
    kinds = known_kinds(tmp_path)
    assert len(kinds) >= 20, kinds
    for kind in kinds:
        assert f'"{kind}"' in text, kind
    # each kind's docstring (with its YAML example) is the description an editor shows
    assert "collect static files" in text  # from the command kind's example


def test_the_schemas_are_shipped_in_the_wheel_as_printed(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for kind in ("playbook", "inventory"):
            inside = [n for n in names if n.startswith("remediate/") and n.endswith(f"{kind}.schema.json")]
            assert len(inside) == 1, names
            assert json.loads(archive.read(inside[0])) == schema(kind)


def test_readme_shows_the_yaml_language_server_line() -> None:
    text = (ROOT / "README.md").read_text()
    assert "# yaml-language-server: $schema=" in text
    assert "remediate schema playbook" in text and "remediate completion bash" in text


def test_unknown_schema_kind_is_a_usage_error() -> None:
    result = remediate("schema", "playbok")
    assert result.returncode == 3 and "usage: remediate schema" in result.stderr


# --- shell completion ---------------------------------------------------------------------------------------


def _bash_complete(script: str, words: list[str], state_dir: Path, cwd: Path | None = None) -> list[str]:
    """COMPREPLY for the command line `words` (the last one being completed), in a real bash."""
    line = " ".join(words)
    program = f"""
source {script}
COMP_WORDS=({' '.join(_bash_quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE={_bash_quote(line)}
COMP_POINT=${{#COMP_LINE}}
fn=$(complete -p remediate | sed -E 's/.*-F ([^ ]+).*/\\1/')
"$fn" remediate {_bash_quote(words[-1])} {_bash_quote(words[-2])}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                            env=cli_env(state_dir), timeout=60, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [w.strip() for w in result.stdout.splitlines() if w.strip()]


def _bash_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def test_bash_completion(tmp_path: Path, state_dir: Path) -> None:
    result = remediate("completion", "bash")
    assert result.returncode == 0, result.stderr
    script = tmp_path / "remediate.bash"
    script.write_text(result.stdout)
    assert "apply" in _bash_complete(str(script), ["remediate", "ap"], state_dir)
    assert "--check" in _bash_complete(str(script), ["remediate", "apply", "x", "--che"], state_dir)
    assert "--skip-tags" in _bash_complete(str(script), ["remediate", "apply", "x", "--sk"], state_dir)
    assert set(_bash_complete(str(script), ["remediate", "drift", "x", "--format", ""], state_dir)) >= {
        "text", "json", "junit"}
    assert set(_bash_complete(str(script), ["remediate", "schema", ""], state_dir)) == {"playbook", "inventory"}
    ops = tmp_path / "ops"
    (ops / "inventory").mkdir(parents=True)
    for name in ("staging.yml", "stage-2.yaml", "prod.yml"):
        (ops / "inventory" / name).write_text("hosts: {}\n")
    assert set(_bash_complete(str(script), ["remediate", "apply", "st"], state_dir, ops)) == {"staging", "stage-2"}
    assert set(_bash_complete(str(script), ["remediate", "inventory", ""], state_dir, ops)) == {
        "staging", "stage-2", "prod"}


def test_zsh_completion_loads_and_registers(tmp_path: Path, state_dir: Path) -> None:
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: lab/setup-host.sh installs it"
    result = remediate("completion", "zsh")
    assert result.returncode == 0, result.stderr
    script = tmp_path / "_remediate"
    script.write_text(result.stdout)
    check = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    loaded = subprocess.run([zsh, "-f", "-c", f"autoload -U compinit; compinit -u; source {script}; "
                                              "print -r -- ${_comps[remediate]}"],
                            capture_output=True, text=True, env=cli_env(state_dir), timeout=60)
    assert loaded.returncode == 0 and loaded.stdout.strip(), loaded.stdout + loaded.stderr


def test_completion_needs_no_import_beyond_the_parser() -> None:
    """`remediate --help` stays light (README: it imports neither paramiko, Fabric nor Jinja2)."""
    probe = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv=['remediate','--help'];\n"
                            "try:\n    runpy.run_module('remediate', run_name='__main__')\nexcept SystemExit: pass\n"
                            "print(sorted(m for m in ('paramiko','fabric','jinja2') if m in sys.modules))"],
                           capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stdout + probe.stderr
