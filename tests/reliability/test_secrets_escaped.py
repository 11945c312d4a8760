"""Masking sees every form a secret is printed in: raw, shell-quoted (whole or inside a larger quoted word),
Python-repr (a settings file's literal, an error message), JSON-escaped and URL-encoded. Secrets hold `'`,
`"`, `\\`, `$` and spaces; none of their forms may appear in apply's text and JSON output, the audit trail and
`audit show`, `inventory`, drift's text, JSON and JUnit, the HTML report or the drift history database. The
real value still reaches the host."""
from __future__ import annotations

import ast
import json
import shlex
import urllib.parse
from pathlib import Path

import pytest

from tests.reliability.conftest import Done, Target, run

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]

QUOTED = "it's \"pa ss\" \\ $HOME"          # every character a shell or Python quotes
APOSTROPHE = "o'brien\\path two"            # repr keeps this in double quotes
URLISH = "x/y?z=1&w=\u00e9 2"                # reaches a URL through urlencode

PLAYBOOK = """\
- hosts: all
  name: secrets
  steps:
    - name: settings hold the password
      python_assignment:
        path: "{{ dir }}/settings.py"
        name: DATABASE_PASSWORD
        value: "{{ db_password }}"
    - name: a line with the other one
      lineinfile: {path: "{{ dir }}/app.conf", line: "token={{ api_token }}"}
    - name: a call that fails loudly
      command:
        argv: [sh, -c, 'printf "%s\\n" "$0" "$1" "$2" >&2; exit 3', "{{ db_password }}",
               "--token={{ api_token }}", "https://h.example/?c={{ api_cred | urlencode }}"]
"""


def forms(secret: str) -> set[str]:
    """Every way remediate or Python may print the secret, computed here independently of remediate."""
    out = {secret, shlex.quote(secret), secret.replace("'", "'\"'\"'"),
           secret.replace("\\", "\\\\").replace("'", "\\'"), secret.replace("\\", "\\\\"),
           json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
           urllib.parse.quote(secret), urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return {f for f in out if len(f) >= 4}


def leaks(text: str | bytes) -> list[tuple[str, str]]:
    found = []
    for secret in (QUOTED, APOSTROPHE, URLISH):
        for form in forms(secret):
            if (form.encode() in text) if isinstance(text, bytes) else (form in text):
                found.append((secret, form))
    return found


def test_no_form_of_a_secret_reaches_any_output(tmp_path: Path, target: Target, state: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text("DEBUG = False\n")
    (project / "app.conf").write_text("# app\n")
    variables = {"dir": str(project), "backup_dir": str(tmp_path / "backups"), "db_password": QUOTED,
                 "api_token": APOSTROPHE, "api_cred": URLISH}
    inventory = target.inventory(tmp_path / "inv.yml", {"web": variables}, top="secret_vars: [api_cred]")
    playbook = tmp_path / "secrets.yml"
    playbook.write_text(PLAYBOOK)
    base = ("-i", str(inventory), "-p", str(playbook))
    outputs: list[tuple[str, Done]] = []

    check = run("apply", "x", *base, "--check", "--diff")
    outputs.append(("apply --check --diff", check))
    assert check.rc == 2, check.text
    assert "+DATABASE_PASSWORD = '********'" in check.out, check.out
    applied = run("apply", "x", *base, "--diff")
    outputs.append(("apply --diff", applied))
    assert applied.rc == 1, applied.text
    outputs.append(("apply --format json", run("apply", "x", *base, "--format", "json")))
    run_id = applied.run_id or ""
    written = ast.parse((project / "settings.py").read_text()).body[-1]
    assert isinstance(written, ast.Assign) and ast.literal_eval(written.value) == QUOTED, "the host got the real value"
    outputs += [(f"audit show {run_id}", run("audit", "show", run_id)),
                ("audit show --format json", run("audit", "show", run_id, "--format", "json")),
                ("inventory", run("inventory", "x", "-i", str(inventory))),
                ("inventory --format json", run("inventory", "x", "-i", str(inventory), "--format", "json"))]
    (project / "settings.py").write_text("DEBUG = False\n")  # drift again
    for fmt in ("text", "json", "junit"):
        outputs.append((f"drift --format {fmt}", run("drift", "x", *base, "--no-health", "--format", fmt)))
    page = tmp_path / "report.html"
    outputs.append(("report", run("report", "x", "--html", str(page))))
    found = [(what, leak) for what, done in outputs for leak in leaks(done.text)]
    found += [(str(p), leak) for p in (page, *state.rglob("*")) if p.is_file() for leak in leaks(p.read_bytes())]
    assert found == [], "\n".join(f"{what}: {form!r} (of {secret!r})" for what, (secret, form) in found)
    assert "********" in applied.out
    assert f"token={APOSTROPHE}" in (project / "app.conf").read_text()
