"""Variables like Ansible (issue 14, item 4): templates rendered when used (recursively, a cycle is a clear
error), `vars_files:`, `group_vars/` and `host_vars/` beside the inventory, group-level `vars` in the inventory.

Each test runs `remediate apply` on `connection: local` hosts with a step that writes the rendered values as
JSON, and reads that file back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cliutil import audit_records, local_inventory, projects, write_playbook
from tests.conftest import remediate

def dump_step(*names: str) -> dict[str, Any]:
    """A step writing {name: value} of the named variables to PROJECT/vars.json."""
    mapping = ", ".join(f"'{n}': {n}" for n in names)
    return {"name": "dump", "command": {"argv": [
        "sh", "-c", 'printf %s "$1" > "$0"', "{{ project_dir }}/vars.json", "{{ {" + mapping + "} | to_json }}"]}}


def dumped(project: Path) -> dict[str, Any]:
    return json.loads((project / "vars.json").read_text())


def apply(inv: Path, playbook: Path, *extra: str) -> None:
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), *extra)
    assert result.returncode == 0, result.stdout + result.stderr


def test_play_vars_are_templates_rendered_when_used(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, shared={"base_port": 8000, "site": "edms"})
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {
        "settings_file": "{{ project_dir }}/edms/settings/base.py",   # the example: an inventory variable
        "greeting": "{{ who }} on {{ where }}",                        # recursive, defined later in the mapping
        "who": "{{ inventory_hostname }}",
        "where": "{{ site | upper }}",
        "port": "{{ base_port + 1 }}",                                 # a single expression keeps its type
        "ports": ["{{ port }}", "{{ port + 1 }}"],                     # inside lists and mappings too
    }, "steps": [dump_step("settings_file", "greeting", "port", "ports")]})
    apply(inv, playbook)
    assert dumped(hosts["web-1"]) == {"settings_file": f"{hosts['web-1']}/edms/settings/base.py",
                                      "greeting": "web-1 on EDMS", "port": 8001, "ports": [8001, 8002]}


def test_extra_vars_override_what_a_lazy_variable_uses(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "defaults": {"release": "1.0"},
                                                    "vars": {"image": "edms:{{ release }}"},
                                                    "steps": [dump_step("image")]})
    apply(inv, playbook, "-e", "release=2.5.1")
    assert dumped(hosts["web-1"]) == {"image": "edms:2.5.1"}


def test_a_lazy_variable_may_use_a_registered_result(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {"said": "{{ probe.stdout | trim }}!"},
                                                    "steps": [
        {"name": "probe", "register": "probe", "command": {"argv": ["echo", "hello"], "read_only": True}},
        dump_step("said")]})
    apply(inv, playbook)
    assert dumped(hosts["web-1"]) == {"said": "hello!"}


def test_a_cycle_is_invalid_input_naming_it(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {
        "a": "{{ b }}/x", "b": "{{ c }}", "c": "{{ a }}", "fine": "1"}, "steps": [dump_step("fine", "a")]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "cycle" in result.stderr and "a -> b -> c -> a" in result.stderr, result.stderr
    assert str(playbook) in result.stderr
    assert not (hosts["web-1"] / "vars.json").exists()
    assert not [r for r in audit_records(state_dir) if r["event"] == "run_start"], "reported before any run"


def test_an_undefined_variable_inside_a_variable_is_invalid_input(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {"path": "{{ compose_dri }}/x"},
                                                    "steps": [dump_step("path")]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "'compose_dri'" in result.stderr and "'path'" in result.stderr, result.stderr
    assert not (hosts["web-1"] / "vars.json").exists()


def test_vars_files(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "common.yml").write_text("app: edms\nworker: '{{ app }}-worker'\nlevel: from_file\n")
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {"level": "from_play"},
                                                    "vars_files": ["vars/common.yml"],  # beside the playbook
                                                    "steps": [dump_step("app", "worker", "level")]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), cwd=tmp_path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    # Ansible: vars_files override play vars
    assert dumped(hosts["web-1"]) == {"app": "edms", "worker": "edms-worker", "level": "from_file"}

    (tmp_path / "vars" / "common.yml").unlink()
    missing = remediate("apply", "x", "-i", str(inv), "-p", str(playbook))
    assert missing.returncode == 3 and "vars/common.yml" in missing.stderr, missing.stderr


def test_group_vars_and_host_vars_beside_the_inventory(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1", "web-2", "db-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, groups={"web": ["web-1", "web-2"]},
                          shared={"tier": "inventory-all", "owner": "inventory-all"},
                          host_vars={"web-2": {"colour": "inventory-host"}})
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("tier: group_vars-all\ncolour: group_vars-all\n")
    (tmp_path / "group_vars" / "web.yaml").write_text("colour: group_vars-web\nrole: '{{ tier }}/web'\n")
    (tmp_path / "host_vars" / "web-2").mkdir()  # a directory of files, as Ansible reads it too
    (tmp_path / "host_vars" / "web-2" / "main.yml").write_text("colour: host_vars-web-2\n")
    (tmp_path / "host_vars" / "db-1.yml").write_text("role: db\n")
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "defaults": {"role": "none"},
                                                    "steps": [dump_step("tier", "owner", "colour", "role")]})
    apply(inv, playbook)
    assert dumped(hosts["web-1"]) == {"tier": "group_vars-all", "owner": "inventory-all", "colour": "group_vars-web",
                                      "role": "group_vars-all/web"}
    assert dumped(hosts["web-2"])["colour"] == "host_vars-web-2"  # host_vars/ beat the inventory's host vars
    assert dumped(hosts["db-1"]) == {"tier": "group_vars-all", "owner": "inventory-all", "colour": "group_vars-all",
                                     "role": "db"}
    shown = json.loads(remediate("inventory", "x", "-i", str(inv), "--format", "json").stdout)
    assert shown["hosts"]["web-2"]["vars"]["colour"] == "host_vars-web-2"


def test_group_level_vars_in_the_inventory(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1", "web-2", "db-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, shared={"service": "shared", "port": 1},
                          host_vars={"web-2": {"port": 3}},
                          groups={"web": {"hosts": ["web-1", "web-2"], "vars": {"service": "backend", "port": 2}},
                                  "db": ["db-1"]})  # the list form stays valid
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "steps": [dump_step("service", "port")]})
    apply(inv, playbook)
    assert dumped(hosts["web-1"]) == {"service": "backend", "port": 2}
    assert dumped(hosts["web-2"]) == {"service": "backend", "port": 3}  # host vars beat group vars
    assert dumped(hosts["db-1"]) == {"service": "shared", "port": 1}
    limited = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--limit", "web")
    assert limited.returncode == 0, limited.stderr


def test_bad_group_vars_file_names_file_and_line(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, groups={"web": ["web-1"]})
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("good: 1\nbad name: 2\n")
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "steps": [dump_step("good")]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook))
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{tmp_path / 'group_vars' / 'web.yml'}:2" in result.stderr and "'bad name'" in result.stderr


def test_a_secret_given_as_a_template_is_masked_as_rendered(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, shared={"base": "s3cr3t-base-77"})
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "vars": {
        "api_token": "{{ base }}-{{ inventory_hostname }}"}, "steps": [dump_step("api_token")]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert dumped(hosts["web-1"]) == {"api_token": "s3cr3t-base-77-web-1"}  # the step got the real value
    assert "s3cr3t-base-77-web-1" not in result.stdout + result.stderr and "********" in result.stdout
