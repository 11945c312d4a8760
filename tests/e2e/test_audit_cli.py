"""Audit trail, rollback, owed reloads, secrets and interruption, through the CLI against a real sshd."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sshd, remediate
from tests.e2e.test_ssh_cli import APPS, PLAYBOOK, SETTINGS, backups, hosts, remediate_files, snapshot, write_inventory  # noqa: F401

pytestmark = pytest.mark.ssh

def verified_playbook(tmp_path: Path) -> Path:
    """fix.yml's steps, then a verification, then its handlers."""
    text = PLAYBOOK.read_text()
    steps, handlers = text.split("  handlers:\n")
    verify = (
        "    - name: settings still parse\n"
        "      command:\n"
        "        argv: [sh, -c, 'python3 -m py_compile \"$0\" && echo verified >> \"$1\"',"
        " \"{{ project_dir }}/edms/settings/base.py\", \"{{ project_dir }}/verified.log\"]\n"
        "      verify: true\n"
    )
    path = tmp_path / "verified.yml"
    path.write_text(steps + verify + "  handlers:\n" + handlers)
    return path


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    return next(line.split()[2] for line in result.stdout.splitlines() if line.startswith("RECAP run "))


def fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def test_apply_is_audited_and_rollback_restores_files_reloads_and_verifies(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], state_dir: Path  # noqa: F811
) -> None:
    mine = {n: hosts[n] for n in ("web-1", "web-2")}
    inventory = write_inventory(tmp_path / "inv.yml", sshd, mine)
    playbook = verified_playbook(tmp_path)
    original = snapshot(mine)

    apply = remediate("apply", "x", "-i", str(inventory), "-p", str(playbook), "--reason", "beat never ran tasks",
                      "--change-ref", "CR-42")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    run_id = run_id_of(apply)
    fixed = snapshot(mine)
    assert fixed != original

    assert remediate("audit", "verify").returncode == 0
    listing = remediate("audit", "show")
    assert f"{run_id}" in listing.stdout and "reason='beat never ran tasks' change_ref=CR-42: exit 0" in listing.stdout
    shown = remediate("audit", "show", run_id)
    assert shown.returncode == 0
    settings = mine["web-1"] / SETTINGS
    assert fingerprint(sshd.dir / "ssh_host_ed25519_key.pub") in shown.stdout
    assert fingerprint(sshd.dir / "id_ed25519.pub") in shown.stdout
    assert "connected as root to 127.0.0.11" in shown.stdout
    import hashlib
    before = hashlib.sha256(original[f"web-1/{SETTINGS}"]).hexdigest()
    after = hashlib.sha256(fixed[f"web-1/{SETTINGS}"]).hexdigest()
    assert f"{settings}: sha256 {before} -> {after}" in shown.stdout
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in shown.stdout
    assert "handler [restart beat] changed" in shown.stdout and "verification [settings still parse] ok" in shown.stdout

    check = remediate("rollback", run_id, "--check", "--diff")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "-CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in check.stdout
    assert snapshot(mine) == fixed

    back = remediate("rollback", run_id, "--reason", "undo CR-42")
    assert back.returncode == 0, back.stdout + back.stderr
    assert snapshot(mine) == original, "rollback must restore byte-identical files"
    for project in mine.values():
        assert (project / "restarts.log").read_text() == "restarted\nrestarted\n", "the reload ran again"
        assert (project / "verified.log").read_text() == "verified\nverified\n", "the verifications ran again"
    assert remediate("audit", "verify").returncode == 0
    rollback_id = run_id_of(back)
    assert f"rolls back run {run_id}" in remediate("audit", "show", rollback_id).stdout

    again = remediate("rollback", run_id, "--no-verify")
    assert again.returncode == 0 and snapshot(mine) == original
    assert all((p / "verified.log").read_text() == "verified\nverified\n" for p in mine.values())
    assert all((p / "restarts.log").read_text() == "restarted\nrestarted\n" for p in mine.values()), \
        "nothing restored, so nothing reloaded"

    trail = state_dir / "audit.jsonl"
    lines = trail.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"event":"', b'"event":"x', 1)
    trail.write_bytes(b"".join(lines))
    tampered = remediate("audit", "verify")
    assert tampered.returncode == 1 and "record 4 (line 4) was edited" in tampered.stdout
    refused = remediate("rollback", run_id)
    assert refused.returncode == 3 and "fails verification" in refused.stderr


def test_rollback_refuses_a_file_changed_since_unless_forced(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]  # noqa: F811
) -> None:
    mine = {"web-1": hosts["web-1"]}
    inventory = write_inventory(tmp_path / "inv.yml", sshd, mine)
    original = snapshot(mine)
    apply = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert apply.returncode == 0, apply.stdout
    settings = mine["web-1"] / SETTINGS
    settings.write_text(settings.read_text() + "# someone else's edit\n")
    edited = settings.read_bytes()

    refused = remediate("rollback", run_id_of(apply))
    assert refused.returncode == 1
    assert f"{settings} changed since that run" in refused.stdout and "--force" in refused.stdout
    assert settings.read_bytes() == edited

    forced = remediate("rollback", run_id_of(apply), "--force")
    assert forced.returncode == 0, forced.stdout
    assert snapshot(mine) == original


def test_unwritable_state_dir_refuses_before_any_change(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]  # noqa: F811
) -> None:
    mine = {"web-1": hosts["web-1"]}
    inventory = write_inventory(tmp_path / "inv.yml", sshd, mine)
    before = snapshot(mine)
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")  # root ignores permissions, a file where the directory should be stops it too
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK),
                       env={"REMEDIATE_STATE_DIR": str(blocker / "remediate")})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot write the audit trail" in result.stderr and "nothing was changed" in result.stderr
    assert result.stdout == ""
    assert snapshot(mine) == before and not (mine["web-1"] / "restarts.log").exists()


KILLABLE = """\
- name: edit, then a long step
  hosts: all
  steps:
    - name: beat uses the database scheduler
      python_assignment:
        path: "{{ project_dir }}/edms/settings/base.py"
        name: CELERY_BEAT_SCHEDULER
        value: django_celery_beat.schedulers:DatabaseScheduler
      notify: restart beat
    - name: a long migration
      command:
        argv: [sh, -c, 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && sleep 3171', "{{ project_dir }}/long.pid"]
        creates: "{{ project_dir }}/long.pid"
  handlers:
    - name: restart beat
      command:
        argv: [sh, -c, 'echo restarted >> "$0"', "{{ project_dir }}/restarts.log"]
"""


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "remediate", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen[str]) -> int:
    """The pid the long step wrote (bounded poll: it fails with the run's output if the step never starts)."""
    for _ in range(600):
        if path.exists():
            return int(path.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the long step never started:\n{out}\n{err}")


def alive(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as "pid args"."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                args = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{stat.parent.name} {args}")
        except (OSError, IndexError, ValueError):
            continue
    return found


def gone(pgid: int) -> bool:
    """Bounded poll: the group has no live process left."""
    for _ in range(100):
        if not alive(pgid):
            return True
        time.sleep(0.1)
    return False


def test_run_killed_after_the_write_is_completed_by_the_next_run(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], state_dir: Path  # noqa: F811
) -> None:
    project = hosts["web-1"]
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": project})
    playbook = tmp_path / "killable.yml"
    playbook.write_text(KILLABLE)
    proc = start("apply", "x", "-i", str(inventory), "-p", str(playbook))
    pid = wait_for(project / "long.pid", proc)
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the remote command a killed client could not stop
    assert "CELERY_BEAT_SCHEDULER" in (project / SETTINGS).read_text()
    assert not (project / "restarts.log").exists()
    owed = json.loads((state_dir / "pending" / "web-1.json").read_text())
    assert [o["handler"] for o in owed] == ["restart beat"]

    after = remediate("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "handler 'restart beat' is owed since run" in after.stdout
    assert (project / "restarts.log").read_text() == "restarted\n"
    assert not (state_dir / "pending" / "web-1.json").exists()
    assert "no end record (killed, or still running)" in remediate("audit", "show").stdout
    assert remediate("audit", "verify").returncode == 0

    third = remediate("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert third.returncode == 0 and (project / "restarts.log").read_text() == "restarted\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_remote_command_records_it_and_exits_130(
    sig: signal.Signals, tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], state_dir: Path  # noqa: F811
) -> None:
    project = hosts["web-1"]
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": project})
    playbook = tmp_path / "killable.yml"
    playbook.write_text(KILLABLE)
    proc = start("apply", "x", "-i", str(inventory), "-p", str(playbook), "--format", "json")
    group = os.getpgid(wait_for(project / "long.pid", proc))
    assert any("sleep 3171" in p for p in alive(group))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    try:
        assert proc.returncode == 130, out + err
        assert gone(group), f"the interrupted remote command is still running: {alive(group)}"
    finally:
        if alive(group):
            os.killpg(group, signal.SIGKILL)
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["hosts"]["web-1"]["status"] == "failed"
    assert "interrupted during step 'a long migration'" in doc["hosts"]["web-1"]["message"]
    assert "remote process group" in doc["hosts"]["web-1"]["message"] + json.dumps(doc["hosts"]["web-1"]["steps"])
    records = [json.loads(line) for line in (state_dir / "audit.jsonl").read_text().splitlines()]
    assert any(r["event"] == "result" and r.get("outcome") == "interrupted" for r in records)
    assert records[-1]["event"] == "run_end" and records[-1]["interrupted"] is True and records[-1]["exit_code"] == 130
    assert not (project / "restarts.log").exists()

    after = remediate("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert after.returncode == 0, after.stdout + after.stderr
    assert (project / "restarts.log").read_text() == "restarted\n", "the owed reload was carried out"


CANARY = "c4n4ry-Hunter2-5ecret"
TOKEN = "tok-Zq81-canary"
PIN = "pin-7731-canary"

CANARY_PLAYBOOK = """\
- name: secrets in files, commands and failures
  hosts: all
  secret_vars: [deploy_pin]
  vars:
    deploy_pin: "%(pin)s"
  steps:
    - name: database password in settings
      lineinfile:
        path: "{{ project_dir }}/edms/settings/base.py"
        line: "DATABASE_PASSWORD = '{{ db_password }}'  # pin {{ deploy_pin }}"
      notify: reload
    - name: a tool that prints what it was given, then fails
      command:
        argv: [sh, -c, 'echo "using $0 and $1"; echo "bad token $1 (pin $2)" >&2; exit 3', "{{ db_password }}",
               "{{ api_token }}", "{{ deploy_pin }}"]
  handlers:
    - name: reload
      command: {argv: [sh, -c, 'echo "reloaded with $0" >> "$1"', "{{ db_password }}", "{{ project_dir }}/reload.log"]}
""" % {"pin": PIN}


def test_canary_secret_appears_in_no_output(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], state_dir: Path  # noqa: F811
) -> None:
    project = hosts["web-1"]
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": project})
    inventory.write_text(inventory.read_text().replace(
        "vars: {project_dir:", f"vars: {{db_password: {CANARY!r}, project_dir:"))
    playbook = tmp_path / "canary.yml"
    playbook.write_text(CANARY_PLAYBOOK)
    base = ("-i", str(inventory), "-p", str(playbook), "-e", f"api_token={TOKEN}")
    outputs = []
    check = remediate("apply", "x", *base, "--check", "--diff")
    outputs.append(check)
    assert check.returncode == 2 and "+DATABASE_PASSWORD = '********'  # pin ********" in check.stdout
    text = remediate("apply", "x", *base, "--diff")
    outputs.append(text)
    assert text.returncode == 1
    assert "bad token ******** (pin ********)" in text.stdout and "+DATABASE_PASSWORD = '********'" in text.stdout
    run_id = run_id_of(text)
    outputs.append(remediate("apply", "x", *base, "--format", "json"))
    assert json.loads(outputs[-1].stdout)["hosts"]["web-1"]["status"] == "failed"
    outputs += [
        remediate("audit", "show"), remediate("audit", "show", run_id), remediate("audit", "show", run_id, "--format", "json"),
        remediate("inventory", "x", "-i", str(inventory)), remediate("inventory", "x", "-i", str(inventory), "--format", "json"),
        remediate("rollback", run_id, "--check", "--diff"),
    ]
    assert "-DATABASE_PASSWORD = '********'" in outputs[-1].stdout, outputs[-1].stdout
    outputs.append(remediate("rollback", run_id))
    assert outputs[-1].returncode == 0, outputs[-1].stdout
    for result in outputs:
        for secret in (CANARY, TOKEN, PIN):
            assert secret not in result.stdout + result.stderr, (result.args, secret)
    for path in state_dir.rglob("*"):
        if path.is_file():
            for secret in (CANARY, TOKEN, PIN):
                assert secret.encode() not in path.read_bytes(), (path, secret)
    # the secret reached the host where it was needed
    reload_log = (project / "reload.log").read_text()
    assert f"reloaded with {CANARY}" in reload_log
    kept = [p for p in backups(inventory).rglob("base.py") if p.is_file()]
    assert any(CANARY.encode() in b.read_bytes() for b in kept), "the rollback's backup keeps the file it replaced"
    assert all(b.stat().st_mode & 0o077 == 0 for b in kept), "a backup holding a secret is readable by its owner only"
    assert remediate_files(project) == []


def test_diagnose_is_audited_with_who_it_reached(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]  # noqa: F811
) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": hosts["web-1"]})
    inventory.write_text(inventory.read_text().replace("vars: {project_dir:", "vars: {compose_dir: /nonexistent, project_dir:"))
    result = remediate("diagnose", "x", "-i", str(inventory), "--reason", "weekly review")
    assert result.returncode == 1, result.stdout + result.stderr  # no compose project there: an error, after connecting
    listing = remediate("audit", "show")
    assert "diagnose  by" in listing.stdout and "reason='weekly review'" in listing.stdout and "exit 1" in listing.stdout
    run_id = listing.stdout.split()[0]
    shown = remediate("audit", "show", run_id)
    assert "diagnosis: 0 problem(s); error:" in shown.stdout
    records = json.loads(remediate("audit", "show", run_id, "--format", "json").stdout)
    (diagnosis,) = [r for r in records if r["event"] == "diagnosis"]
    assert diagnosis["host_key_fingerprint"] == fingerprint(sshd.dir / "ssh_host_ed25519_key.pub")
    assert diagnosis["client_key_fingerprint"] == fingerprint(sshd.dir / "id_ed25519.pub")
    assert remediate("audit", "verify").returncode == 0


def test_records_are_copied_to_the_host_with_audit_remote_dir(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], state_dir: Path  # noqa: F811
) -> None:
    mine = {"web-1": hosts["web-1"], "web-2": hosts["web-2"]}
    inventory = write_inventory(tmp_path / "inv.yml", sshd, mine)
    inventory.write_text(inventory.read_text().replace(
        "vars: {project_dir:", f"vars: {{audit_remote_dir: {str(tmp_path / 'remote-audit')!r}, project_dir:", 1))
    apply = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert apply.returncode == 0, apply.stdout + apply.stderr
    copied = (tmp_path / "remote-audit" / "audit.jsonl").read_bytes().splitlines()
    local = (state_dir / "audit.jsonl").read_bytes().splitlines()
    assert copied and set(copied) <= set(local), "the host's copy is the trail's lines, byte for byte"
    events = [json.loads(line) for line in copied]
    assert events[0]["event"] == "run_start" and events[-1]["event"] == "host_end"
    assert {e.get("host") for e in events[1:]} == {"web-1"}
