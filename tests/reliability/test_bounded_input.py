"""Bounded input: a YAML alias bomb is refused with file:line at once (in step arguments, play variables and
inventory variables); oversized playbooks and inventories are refused with a clear error; Jinja2 cannot build
a huge value (repetition, padding, powers) or render a huge result; a huge file is refused before it is read
into memory; the audit trail keeps a big diff as its hash. Every run here has its address space capped, so a
runaway allocation fails fast instead of taking the machine's memory, and reports its peak RSS and time."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.reliability.conftest import Target, measured, records, run

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]


def bomb(indent: str, levels: str = "bcdefghi") -> str:
    """The billion laughs in YAML: nine aliases of nine aliases ... of nine strings (600 bytes, 9**9 leaves)."""
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in levels:
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines)


LOCAL_INVENTORY = "hosts:\n  here: {connection: local}\n"


def refused_bomb(m_rc: int, err: str, name: str) -> bool:
    return m_rc == 3 and re.search(rf"{re.escape(name)}:\d+", err) is not None and "alias" in err


def test_an_alias_bomb_in_step_arguments_is_refused_at_once(tmp_path: Path) -> None:
    playbook = tmp_path / "args.yml"
    playbook.write_text(f"- hosts: all\n  name: bomb\n  steps:\n    - name: boom\n      command:\n        env:\n"
                        f"{bomb('          ')}\n        argv: [echo, x]\n")
    m = measured("validate", str(playbook), timeout=15)
    print(f"\nalias bomb in step arguments ({playbook.stat().st_size} bytes): refused in {m.seconds:.2f} s, "
          f"{m.peak_mib:.0f} MiB")
    assert refused_bomb(m.done.rc, m.done.err, playbook.name), m.done.text


def test_an_alias_bomb_in_play_variables_is_refused_at_once(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(LOCAL_INVENTORY)
    playbook = tmp_path / "vars.yml"
    playbook.write_text(f"- hosts: all\n  name: bomb\n  vars:\n    secret_stuff:\n{bomb('      ')}\n  steps:\n"
                        "    - name: hi\n      command: {argv: [echo, x]}\n")
    m = measured("apply", "x", "-i", str(inventory), "-p", str(playbook), timeout=15)
    print(f"\nalias bomb in play vars: refused in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert refused_bomb(m.done.rc, m.done.err, playbook.name), m.done.text


def test_an_alias_bomb_in_inventory_variables_is_refused_at_once(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"vars:\n  junk:\n{bomb('    ')}\n" + LOCAL_INVENTORY)
    m = measured("inventory", "x", "-i", str(inventory), timeout=15)
    print(f"\nalias bomb in inventory vars: refused in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert refused_bomb(m.done.rc, m.done.err, inventory.name), m.done.text


def test_ordinary_anchors_and_aliases_still_load(tmp_path: Path) -> None:
    playbook = tmp_path / "ok.yml"
    playbook.write_text("- hosts: all\n  name: anchors\n  vars:\n    base: &base {a: 1, b: [x, y]}\n"
                        "    more: {<<: *base, c: 3}\n    again: *base\n  steps:\n"
                        "    - &step {name: one, command: {argv: [echo, x]}}\n    - *step\n")
    out = run("validate", str(playbook))
    assert out.rc == 0 and "2 step(s)" in out.out, out.text


def test_a_key_beside_a_merge_key_overrides_the_merged_one(tmp_path: Path) -> None:
    """YAML's merge keys: `{<<: *step, name: two}` is the anchored mapping with its name replaced."""
    playbook = tmp_path / "merge.yml"
    playbook.write_text("- hosts: all\n  name: merge\n  steps:\n"
                        "    - &step {name: one, command: {argv: [echo, x]}}\n    - {<<: *step, name: two}\n")
    out = run("validate", str(playbook))
    assert out.rc == 0 and "2 step(s)" in out.out, out.text


def big_playbook(path: Path, megabytes: int) -> Path:
    step = "    - name: step {i}\n      command: {{argv: [echo, padding-padding-padding-padding]}}\n"
    with path.open("w") as fh:
        fh.write("- hosts: all\n  name: big\n  steps:\n")
        i = 0
        while fh.tell() < megabytes << 20:
            fh.write("".join(step.format(i=i + k) for k in range(1000)))
            i += 1000
    return path


def test_an_oversized_playbook_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    playbook = big_playbook(tmp_path / "big.yml", 12)
    m = measured("validate", str(playbook), timeout=60)
    print(f"\n12 MiB playbook: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 3 and "big.yml" in m.done.err and "MiB" in m.done.err, m.done.text


def test_an_oversized_inventory_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    with inventory.open("w") as fh:
        fh.write("hosts:\n")
        i = 0
        while fh.tell() < 12 << 20:
            fh.write("".join(f"  host-{i + k}: {{address: 192.0.2.1, vars: {{role: padding-padding}}}}\n"
                             for k in range(1000)))
            i += 1000
    m = measured("inventory", "x", "-i", str(inventory), timeout=60)
    print(f"\n12 MiB inventory: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 3 and "inv.yml" in m.done.err and "MiB" in m.done.err, m.done.text


HUGE = [
    "('a' * 4000000000) | length",
    "([1, 2] * 2000000000) | length",
    "'x' | center(4000000000) | length",
    "'%4000000000s' % 'x'",
    "10 ** 1000000000",
]


@pytest.mark.parametrize("expression", HUGE)
def test_a_huge_value_in_a_template_is_refused_without_being_built(tmp_path: Path, expression: str) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(LOCAL_INVENTORY)
    playbook = tmp_path / "huge.yml"
    playbook.write_text("- hosts: all\n  name: huge\n  steps:\n    - name: build it\n"
                        f"      assert: {{that: [{json.dumps(expression + ' != 0')}]}}\n")
    m = measured("apply", "x", "-i", str(inventory), "-p", str(playbook), timeout=30)
    print(f"\n{expression}: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 1 and "limit" in m.done.out and m.done.run_id, m.done.text
    assert m.peak_mib < 400, f"{m.peak_mib:.0f} MiB"


def test_a_huge_rendered_template_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "huge.j2").write_text("{% for i in range(100000) %}{{ 'y' * 1000 }}\n{% endfor %}")
    (tmp_path / "playbooks").mkdir()
    playbook = tmp_path / "playbooks" / "huge.yml"
    dest = tmp_path / "project" / "huge.conf"
    dest.parent.mkdir()
    playbook.write_text(f"- hosts: all\n  name: huge\n  steps:\n    - name: render\n"
                        f"      template: {{src: huge.j2, dest: {str(dest)!r}}}\n")
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"hosts:\n  here: {{connection: local, vars: {{backup_dir: {str(tmp_path / 'b')!r}}}}}\n")
    m = measured("apply", "x", "-i", str(inventory), "-p", str(playbook), timeout=60)
    print(f"\n100 MB rendered template: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 1 and "limit" in m.done.out, m.done.text
    assert not dest.exists()


def test_a_200_mb_file_edit_is_refused_before_it_is_read(tmp_path: Path, target: Target) -> None:
    path = tmp_path / "project" / "huge.conf"
    path.parent.mkdir()
    line = b"# line of padding text for the big file edit test\n"
    with path.open("wb") as fh:
        for _ in range(4000):
            fh.write(line * 1000)  # 200 MB
    size = path.stat().st_size
    inventory = target.inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tmp_path / "backups")}})
    playbook = tmp_path / "edit.yml"
    playbook.write_text(f"- hosts: all\n  name: huge\n  steps:\n    - name: edit a 200 MB file\n"
                        f"      lineinfile: {{path: {str(path)!r}, line: 'X = 1'}}\n")
    m = measured("apply", "x", "-i", str(inventory), "-p", str(playbook), timeout=120)
    print(f"\n{target.kind}: 200 MB edit: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 1 and str(path) in m.done.out and "MiB" in m.done.out, m.done.text
    assert path.stat().st_size == size, "the file was changed"
    kept = tmp_path / "backups"
    assert not (kept.exists() and any(p.name == "huge.conf" for p in kept.rglob("*"))), "a backup was made"
    assert m.peak_mib < 200, f"{m.peak_mib:.0f} MiB"


def test_the_audit_trail_keeps_a_big_diff_as_its_hash(tmp_path: Path, state: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "gen.j2").write_text(
        "{% for i in range(60000) %}line {{ i }} of the generated file, some text here\n{% endfor %}")
    (tmp_path / "playbooks").mkdir()
    playbook = tmp_path / "playbooks" / "gen.yml"
    dest = tmp_path / "project" / "gen.conf"
    dest.parent.mkdir()
    playbook.write_text(f"- hosts: all\n  name: gen\n  steps:\n    - name: create a 3 MB file\n"
                        f"      template: {{src: gen.j2, dest: {str(dest)!r}}}\n")
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"hosts:\n  here: {{connection: local, vars: {{backup_dir: {str(tmp_path / 'b')!r}}}}}\n")
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert out.rc == 0 and dest.stat().st_size > 2_500_000, out.text
    trail = (state / "audit.jsonl").stat().st_size
    print(f"\naudit trail after a 3 MB created file: {trail} bytes")
    assert trail < 256 << 10, trail
    (intent,) = [r for r in records(state) if r.get("event") == "intent"]
    assert "diff" not in intent and re.fullmatch(r"[0-9a-f]{64}", intent["diff_sha256"]), intent
    assert intent["diff_bytes"] > 2_500_000
    shown = run("audit", "show", out.run_id or "")
    assert intent["diff_sha256"] in shown.out, shown.out


def test_large_legitimate_input_is_handled_and_masked(tmp_path: Path) -> None:
    """A 100 kB secret-named value and a loop of 20000 items: they load, render and mask in passing time."""
    inventory = tmp_path / "inv.yml"
    secret = "s3cret-" + "x" * 100_000  # an exec argument may hold 128 KiB
    inventory.write_text(f"hosts:\n  here:\n    connection: local\n    vars: {{api_token: {secret!r}}}\n")
    playbook = tmp_path / "large.yml"
    playbook.write_text("- hosts: all\n  name: large\n  steps:\n    - name: many items\n"
                        "      assert: {that: ['item >= 0', 'api_token | length > 1000']}\n"
                        "      loop: \"{{ range(20000) | list }}\"\n"
                        "    - name: the secret in a failure\n"
                        "      command: {argv: [sh, -c, 'echo \"$0\" >&2; exit 3', '{{ api_token }}']}\n")
    m = measured("apply", "x", "-i", str(inventory), "-p", str(playbook), "--format", "json", timeout=120)
    print(f"\n100 kB secret, 20000 loop items: exit {m.done.rc} in {m.seconds:.2f} s, {m.peak_mib:.0f} MiB")
    assert m.done.rc == 1, m.done.text
    assert "s3cret-" not in m.done.text and "********" in m.done.out
