"""One reload per service for a run: held compose reloads merged per project; verification plays after the fixes."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remediate.api import load_playbook
from remediate.core.errors import Location, StepError
from remediate.core.options import RunOptions
from remediate.core.results import Status
from remediate.engine.host import HostRunner
from remediate.engine.reloads import HeldReload, merge, mergeable
from remediate.inputs.inventory import Host
from remediate.inputs.playbook import Play, StepSpec
from remediate.steps.base import Step
from remediate.steps.compose import ComposeReload
from tests.fakes import FakeTransport, ok

HERE = Location("site.yml", 1)


def reload(name: str, services: list[str], project: str = "/srv/app", **keys: Any) -> StepSpec:
    return StepSpec(name, "compose_reload", {"service": services, "project_dir": project}, HERE, **keys)


def held(spec: StepSpec, play: str, *paths: str) -> HeldReload:
    return HeldReload(spec, Play(play, "all", HERE, (), path=f"/pb/{play}.yml"), {}, paths, (spec.name,))


def build(spec: StepSpec, variables: Mapping[str, Any]) -> Step:
    if "{{" in str(spec.args["service"]):
        raise StepError("undefined variable")
    return ComposeReload(service=tuple(spec.args["service"]), project_dir=spec.args["project_dir"])


def test_reloads_of_one_project_merge_into_one_over_the_union_of_services_and_paths() -> None:
    worker = held(reload("reload worker", ["celery_worker", "celery_beat"]), "tasks", "/srv/app/backend/apps.py")
    beat = held(reload("reload beat", ["celery_beat"]), "beat", "/srv/app/backend/settings.py")
    other = held(reload("reload web", ["web"], project="/srv/other"), "web", "/srv/other/web.py")

    merged = merge((worker, beat, other), build)

    assert [m.spec.name for m in merged] == ["reload worker + reload beat", "reload web"]
    assert merged[0].spec.args["service"] == ["celery_worker", "celery_beat"], "each service once, in order"
    assert merged[0].paths == ("/srv/app/backend/apps.py", "/srv/app/backend/settings.py")
    assert merged[0].members == (worker, beat), "every member is kept for the trail and the owed reloads"
    assert [m.audit_fields()["play"] for m in merged[0].members] == ["tasks", "beat"]
    assert merged[1].members == (other,) and merged[1].spec is other.handler


def test_a_reload_whose_arguments_do_not_render_stays_alone_and_conditional_handlers_are_not_merged() -> None:
    bad = held(reload("reload broken", ["{{ nope }}"]), "a")
    good = held(reload("reload beat", ["celery_beat"]), "b")
    assert [m.members for m in merge((bad, good), build)] == [(bad,), (good,)]
    assert mergeable(reload("r", ["a"])) and not mergeable(reload("r", ["a"], when="x"))
    assert not mergeable(StepSpec("restart", "command", {"argv": ["x"]}, HERE))


PLAYBOOK = """\
- name: fix {x}
  hosts: all
  steps:
    - name: fix {x}
      command: {{argv: [fix-{x}]}}
- name: verify {x}
  hosts: all
  steps:
    - name: verify {x}
      command: {{argv: [check-{x}], read_only: true}}
      verify: true
"""


def test_verification_plays_wait_for_the_later_playbooks_fixes_and_keep_their_order(tmp_path: Path) -> None:
    for x in "ab":
        (tmp_path / f"{x}.yml").write_text(PLAYBOOK.format(x=x))
    (tmp_path / "site.yml").write_text("- import_playbook: a.yml\n- import_playbook: b.yml\n")
    t = FakeTransport()
    for argv in ("fix-a", "fix-b", "check-a", "check-b"):
        t.on((argv,), ok())
    result = HostRunner(Host("h", "addr"), load_playbook(tmp_path / "site.yml"), t, RunOptions(), "run1").run()
    assert result.status == Status.CHANGED, result
    assert t.calls == [("fix-a",), ("fix-b",), ("check-a",), ("check-b",)]
    assert result.verified_s is not None
