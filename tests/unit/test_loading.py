"""Inventory and playbook loading: values, locations, and refusals."""
from __future__ import annotations

from pathlib import Path

import pytest

from remediate.core.errors import InputError
from remediate.inputs.inventory import load_inventory
from remediate.api import load_playbook


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_inventory_merges_vars_and_defaults(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "staging.yml", """\
vars:
  compose_dir: /srv/edms
  celery_app: edms
hosts:
  staging-1:
    address: 203.0.113.10
    user: deploy
    vars: {celery_app: other}
  local-1:
    connection: local
groups:
  web: [staging-1]
"""))
    h = inv.host("staging-1")
    # a port not given is None: ssh_config's Port, else 22, decides it (transport/sshconfig.py)
    assert (h.port, h.user, h.vars["compose_dir"], h.vars["celery_app"]) == (None, "deploy", "/srv/edms", "other")
    assert h.known_hosts is None  # ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts
    assert inv.host("local-1").is_local
    assert [x.name for x in inv.select("web", "limit", h.where)] == ["staging-1"]
    assert [x.name for x in inv.select("all", "limit", h.where)] == ["staging-1", "local-1"]


@pytest.mark.parametrize("text, where, message", [
    ("hosts:\n  a:\n    address: x\n    prot: 22\n", ":4", "did you mean 'port'"),
    ("hosts:\n  a:\n    address: x\n    port: 99999\n", ":4", "out of range"),
    ("hosts:\n  a:\n    become: yes please\n", ":3", "'become' must be true or false"),
    ("hosts:\n  a:\n    become_user: 'no such'\n", ":3", "must be a user name"),
    ("hosts: {}\n", ":1", "non-empty"),
    ("hosts:\n  a: {address: x}\ngroups:\n  web: [b]\n", ":4", "unknown host 'b'"),
    ("vars: {1x: 2}\nhosts:\n  a: {address: x}\n", ":1", "not an identifier"),
])
def test_inventory_errors_name_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, "inv.yml", text)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert f"{path}{where}" in str(info.value) and message in str(info.value)


def test_playbook_steps_handlers_and_imports(tmp_path: Path) -> None:
    write(tmp_path, "one.yml", """\
- name: one
  hosts: all
  defaults: {beat_service: celery_beat}
  steps:
    - name: edit
      python_assignment: {path: /x.py, name: A, value: 1}
      notify: reload
      tags: [settings]
    - name: poll
      command: {argv: [true]}
      until: result.rc == 0
      retries: 2
      delay: 0.5
  handlers:
    - name: reload
      command: {argv: [echo, reloaded]}
""")
    site = write(tmp_path, "site.yml", "- import_playbook: one.yml\n- import_playbook: one.yml\n")
    plays = load_playbook(site)
    assert len(plays) == 2
    edit, poll = plays[0].steps
    assert (edit.kind, edit.notify, edit.tags, str(edit.where)) == ("python_assignment", ("reload",), ("settings",), f"{tmp_path}/one.yml:5")
    assert (poll.until, poll.retries, poll.delay) == ("result.rc == 0", 2, 0.5)
    assert plays[0].handlers[0].name == "reload" and plays[0].defaults["beat_service"] == "celery_beat"


@pytest.mark.parametrize("text, line, message", [
    ("- hosts: all\n  steps:\n    - name: s\n      comand: {argv: [x]}\n", 4, "did you mean 'command'"),
    ("- hosts: all\n  steps:\n    - name: s\n      command: {argv: [x]}\n      notify: nope\n", 3, "unknown handler 'nope'"),
    ("- hosts: all\n  step: []\n", 2, "did you mean 'steps'"),
    ("- hosts: all\n  steps:\n    - name: s\n      command: {argv: [x]}\n      when: 'a ==== b'\n", 5, "syntax error"),
    ("- hosts: all\n  steps:\n    - name: s\n      command: {argv: ['{{ a }']}\n", 4, "syntax error"),
    ("- hosts: all\n  steps:\n    - name: s\n      command: {argv: [x]}\n      register: 1bad\n", 5, "not an identifier"),
    ("- hosts: all\n  steps:\n    - name: s\n      command: {argv: [x]}\n      delay: -1\n", 5, "delay"),
    ("- hosts: all\n  steps:\n    - name: s\n", 3, "step has no kind"),
    ("- import_playbook: missing.yml\n", None, "cannot read"),
])
def test_playbook_errors_name_file_and_line(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    path = write(tmp_path, "p.yml", text)
    with pytest.raises(InputError) as info:
        load_playbook(path)
    if line:
        assert f"p.yml:{line}" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("hosts:\n\tweb: {}\n", "found character '\\t' that cannot start any token"),
        ("hosts:\n  web: *nope\n", "found undefined alias 'nope'"),
        ("hosts: [web\n", "expected ',' or ']'"),
    ],
)
def test_malformed_yaml_names_the_offending_character_or_alias(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_inventory(path)
    assert message in str(exc.value) and f"{path}:" in str(exc.value)
