"""What the shipped playbooks need from loading and templating: earlier plays' results, Ansible's regex tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from remediate import api
from remediate.core.errors import InputError
from remediate.core.options import RunOptions

INVENTORY = "vars: {compose_dir: /srv/edms}\nhosts:\n  here: {connection: local}\n"
TWO_PLAYS = """\
- name: first
  hosts: all
  steps:
    - name: look
      command: {argv: [true], read_only: true}
      register: found
- name: second
  hosts: all
  steps:
    - name: use
      command: {argv: [echo, "{{ found.stdout }}"], read_only: true}
"""


def test_later_plays_may_use_results_registered_earlier(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(INVENTORY)
    (tmp_path / "two.yml").write_text(TWO_PLAYS)
    loaded = api.load("x", (str(tmp_path / "two.yml"),), RunOptions(), str(tmp_path / "inv.yml"))
    assert [p.name for p in loaded.plays] == ["first", "second"]
    # the shipped site.yml registers `found` in one play and uses it in the next
    assert api.load("x", ("site",), RunOptions(), str(tmp_path / "inv.yml")).hosts[0].name == "here"


def test_a_result_registered_only_in_a_later_play_is_still_undefined(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(INVENTORY)
    first, second = TWO_PLAYS.split("- name: second\n")
    (tmp_path / "two.yml").write_text("- name: second\n" + second + first)
    with pytest.raises(InputError, match="undefined variable 'found'"):
        api.load("x", (str(tmp_path / "two.yml"),), RunOptions(), str(tmp_path / "inv.yml"))


@pytest.mark.parametrize("expression, expected", [
    ("['-A', '--scheduler=x'] | select('match', '--scheduler=') | list | length", 1),
    ("['-A', 'beat'] | select('match', '--scheduler=') | list | length", 0),
    ("['celery', 'beat'] | select('search', 'ea') | list", ["beat"]),
])
def test_regex_tests_of_the_shipped_playbooks(expression: str, expected: object) -> None:
    from remediate.inputs import templating
    from remediate.core.errors import Location

    assert templating.evaluate(expression, {}, Location("x.yml", 1), "t") == expected
