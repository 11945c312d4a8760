"""Templating without Jinja2 where it is not needed: plain `{{ name }}` texts and simple comparisons give what
Jinja2 gives (table-driven, against Jinja2 itself), and a command whose inputs are not templated never imports
Jinja2 or urllib.request (a fresh interpreter's sys.modules)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2 import meta

from remediate.core.errors import Location
from remediate.inputs import sandbox, templating

ROOT = Path(__file__).resolve().parents[2]
HERE = Location("test.yml", 1)
VARS: dict[str, Any] = {"project_dir": "/srv/edms", "n": 3, "flag": True, "nothing": None, "items": [1, "a"],
                        "doc": {"k": "v"}, "text": "{{ not rendered again }}"}


def by_jinja2(text: str, variables: dict[str, Any]) -> Any:
    """What the Jinja2 path of render_string gives (the same branches as before the fast path)."""
    stripped = text.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        return templating._defined(templating._call(templating._expression(stripped[2:-2].strip()), variables))
    return templating._render(templating._template(text), variables)


@pytest.mark.parametrize("text", [
    "{{ project_dir }}/edms/settings/base.py",
    "{{project_dir}}",
    "  {{ n }}  ",
    "{{ n }}\n",
    "{{ flag }}",
    "{{ nothing }}",
    "x{{ nothing }}",
    "{{ items }} and {{ doc }}",
    "{{\tn\t}}-{{ n }}",
    "{{ text }}",
    "a {{ n }} b {{ project_dir }} c\n",
])
def test_plain_references_render_as_jinja2_renders_them(text: str) -> None:
    assert templating._references(text) is not None, "the fast path takes it"
    got = templating.render_string(text, VARS, HERE, "t")
    want = by_jinja2(text, VARS)
    assert (type(got), got) == (type(want), want)


@pytest.mark.parametrize("text", [
    "{{ true }}", "{{ none }}", "{{ not }}", "{{ n | string }}", "{{ doc.k }}", "${HOME}/{{ n }}", "{{{ n }}",
    "{{ n }}}", "a\r\n{{ n }}", "{% if n %}x{% endif %}", "{# c #}{{ n }}", "{{ n }}{{", "{{ range }}",
])
def test_anything_else_is_left_to_jinja2(text: str) -> None:
    assert templating._references(text) is None or "range" in text
    try:
        want: Any = by_jinja2(text, VARS)
    except Exception:  # noqa: BLE001 - the fast path must not answer where Jinja2 raises
        with pytest.raises(templating.TemplateError):
            templating.render_string(text, VARS, HERE, "t")
        return
    got = templating.render_string(text, VARS, HERE, "t")
    assert (type(got), got) == (type(want), want)


def test_an_undefined_name_is_jinja2s_error() -> None:
    with pytest.raises(templating.TemplateError, match="undefined variable: 'missing' is undefined"):
        templating.render_string("{{ missing }}/x", VARS, HERE, "t")


def test_a_lazy_variable_is_rendered_when_used() -> None:
    lazy = templating.Lazy({"base": "/srv", "dir": "{{ base }}/edms"}, {}, {})
    assert templating.render_string("{{ dir }}/settings.py", lazy, HERE, "t") == "/srv/edms/settings.py"


@pytest.mark.parametrize("source", [
    "{{ project_dir }}/x", "{{ a }}{{ b }}", "{{ result.rc == 0 }}", "{{ result.rc != 0 }}", "{{ a.b.c >= -3 }}",
    "{{ x == 'done' }}", '{{ x < "y" }}', "{{ a == b.c }}", "{{ x == none }}", "{{ true }}", "{{ 5 }}",
    "{{ result.stdout == '' }}", "{{ _private }}",
])
def test_names_and_syntax_of_simple_templates_are_jinja2s(source: str) -> None:
    env = sandbox.environment()
    want = frozenset(meta.find_undeclared_variables(env.parse(source)))
    assert templating._simple_names(source) == want or templating._constant(source)
    assert templating._names(source) == want
    assert templating._syntax_error(source) is None


@pytest.mark.parametrize("source", ["{{ a == }}", "{{ if == 1 }}", "{{ true.x }}", "{{ a = 1 }}", "{{ a === b }}"])
def test_what_the_fast_path_does_not_know_goes_to_jinja2(source: str) -> None:
    assert templating._simple_names(source) is None


def test_jinja2_globals_are_the_ones_named_without_it() -> None:
    assert templating.GLOBAL_NAMES == frozenset(sandbox.environment().globals)


def test_boolean_literals_evaluate_without_jinja2() -> None:
    assert [templating.evaluate(t, {}, HERE, "when") for t in ("true", "False", "{{ false }}")] == [True, False, False]


PROBE = """
import json, sys
from remediate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in ("jinja2", "urllib.request", "paramiko") if m in sys.modules]}))
"""


def loaded_by(args: list[str], tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REMEDIATE_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_help_imports_no_jinja2_nor_urllib(tmp_path: Path) -> None:
    assert loaded_by(["--help"], tmp_path) == {"code": 0, "loaded": []}


def test_apply_of_an_untemplated_playbook_imports_no_jinja2_nor_urllib(tmp_path: Path) -> None:
    settings = tmp_path / "project" / "settings.py"
    settings.parent.mkdir()
    settings.write_text("DEBUG = False\n")
    (tmp_path / "inv.yml").write_text("hosts:\n  here:\n    connection: local\n")
    (tmp_path / "site.yml").write_text(f"""\
- name: plain
  hosts: all
  steps:
    - name: the scheduler
      python_assignment:
        path: {settings}
        name: CELERY_BEAT_SCHEDULER
        value: django_celery_beat.schedulers:DatabaseScheduler
    - name: still there
      command:
        argv: [grep, -c, DEBUG, {settings}]
      changed_when: false
""")
    args = ["apply", "here", "-i", "inv.yml", "-p", "site.yml"]
    assert loaded_by([*args, "--check", "--diff"], tmp_path) == {"code": 2, "loaded": []}
    assert loaded_by(args, tmp_path) == {"code": 0, "loaded": []}
    assert "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in settings.read_text()
    # the same playbook with a template in it does load Jinja2 (the check can fail)
    (tmp_path / "site.yml").write_text((tmp_path / "site.yml").read_text().replace("DEBUG,", "'{{ 1 + 1 }}',"))
    assert loaded_by([*args, "--check"], tmp_path)["loaded"] == ["jinja2"]
