"""The CLI against a real sshd: check -> apply -> apply again, and every kind of bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sshd, remediate

FIXTURES = ROOT / "tests" / "fixtures"
PLAYBOOK = FIXTURES / "playbooks" / "fix.yml"
SETTINGS = "edms/settings/base.py"
APPS = "apps/audit/apps.py"

pytestmark = pytest.mark.ssh


def write_inventory(path: Path, sshd: Sshd, hosts: dict[str, Path], overrides: dict[str, dict[str, object]] | None = None) -> Path:
    """Hosts reaching their projects through the suite's sshd; backups in BACKUPS beside the inventory."""
    lines = ["hosts:"]
    for i, (name, project) in enumerate(hosts.items()):
        spec: dict[str, object] = {
            "address": sshd.addresses[i % len(sshd.addresses)],
            "port": sshd.port,
            "user": "root",
            "identity_file": str(sshd.identity),
            "known_hosts": str(sshd.known_hosts),
        }
        spec.update((overrides or {}).get(name, {}))
        lines.append(f"  {name}:")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in spec.items()]
        lines.append(f"    vars: {{project_dir: {json.dumps(str(project))}, backup_dir: {json.dumps(str(backups(path)))}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, Path]:
    """Three hosts, each with its own copy of a broken project."""
    out = {}
    for name in ("web-1", "web-2", "web-3"):
        out[name] = Path(shutil.copytree(FIXTURES / "project", tmp_path / name))
    return out


def backups(inventory: Path) -> Path:
    """The backup_dir write_inventory gives every host: outside each project."""
    return inventory.parent / "backups"


def backup_of(inventory: Path, run_id: str, path: Path) -> Path:
    """Where run_id keeps the original of path: BACKUP_DIR/RUN_ID/ mirroring the absolute path."""
    return backups(inventory) / run_id / path.relative_to("/")


def remediate_files(project: Path) -> list[Path]:
    """Anything named like remediate's own files inside a project (backups, temp files): must be none."""
    return [p for p in project.rglob("*") if "remediate" in p.name]


def snapshot(hosts: dict[str, Path]) -> dict[str, bytes]:
    return {f"{n}/{rel}": (p / rel).read_bytes() for n, p in hosts.items() for rel in (SETTINGS, APPS)}


def test_check_apply_apply_again(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    before = snapshot(hosts)

    check = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--check", "--diff")
    assert check.returncode == 2, check.stdout + check.stderr
    settings = hosts["web-1"] / SETTINGS
    assert f"--- web-1:{settings}" in check.stdout and f"+++ web-1:{settings}" in check.stdout
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in check.stdout
    assert "+        import apps.audit.integrity_tasks  # noqa" in check.stdout
    assert "would run sh -c" in check.stdout  # the handler, planned, not run
    assert snapshot(hosts) == before, "check mode changed a file"
    assert not any((p / "restarts.log").exists() or (p / "poll.count").exists() for p in hosts.values())

    apply = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--format", "json")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    doc = json.loads(apply.stdout)
    assert doc["mode"] == "apply" and doc["summary"]["changed"] == 3
    steps = doc["hosts"]["web-2"]["steps"]
    assert [s["status"] for s in steps] == ["changed", "changed", "ok", "ok", "changed"]
    for project in hosts.values():
        text = (project / SETTINGS).read_text()
        assert "CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'\n" \
               "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n" in text
        assert "        import apps.audit.signals  # noqa\n        import apps.audit.integrity_tasks  # noqa\n" \
               in (project / APPS).read_text()
        assert (project / "restarts.log").read_text() == "restarted\n"  # the handler ran once for two notifications
        backup = backup_of(inventory, doc["run_id"], project / SETTINGS)
        assert backup.read_bytes() == before[f"{project.name}/{SETTINGS}"]
        assert backup.stat().st_mode & 0o777 == 0o600 and backup.parent.stat().st_mode & 0o777 == 0o700
        assert remediate_files(project) == [], "no backup or temp file inside the project"
    after_first = snapshot(hosts)

    again = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout.split("RECAP")[1].replace("would_change=0", "")
    assert snapshot(hosts) == after_first
    assert all((p / "restarts.log").read_text() == "restarted\n" for p in hosts.values())


def test_line_endings_bom_mode_and_owner_survive(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    project = hosts["web-1"]
    settings = project / SETTINGS
    settings.write_bytes(b"\xef\xbb\xbf" + settings.read_bytes().replace(b"\n", b"\r\n"))
    settings.chmod(0o640)
    import os
    os.chown(settings, 1234, 5678)
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": project})
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert result.returncode == 0, result.stdout + result.stderr
    data = settings.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\nCELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    st = settings.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)


def test_unreachable_host_does_not_stop_the_others(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts, {"web-2": {"port": 1}})
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--format", "json", "--connect-timeout", "3")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["hosts"]["web-2"]["status"] == "unreachable"
    assert "127.0.0.12:1" in doc["hosts"]["web-2"]["message"]
    assert doc["hosts"]["web-1"]["status"] == doc["hosts"]["web-3"]["status"] == "changed"
    assert doc["summary"] == {"ok": 0, "changed": 2, "failed": 0, "unreachable": 1, "pending": 0}


def test_unknown_host_key_is_refused_with_its_fingerprint(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": hosts["web-1"]}, {"web-1": {"known_hosts": str(empty)}})
    before = snapshot({"web-1": hosts["web-1"]})
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert result.returncode == 1
    fp = subprocess.run(["ssh-keygen", "-lf", str(sshd.dir / "ssh_host_ed25519_key.pub")], capture_output=True, text=True).stdout.split()[1]
    assert "is not in" in result.stdout and fp in result.stdout
    assert snapshot({"web-1": hosts["web-1"]}) == before
    assert empty.read_text() == ""

    accepted = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--accept-new-host-keys")
    assert accepted.returncode == 0, accepted.stdout
    assert f"added new host key for [127.0.0.11]:{sshd.port}" in accepted.stdout
    assert fp in accepted.stdout and f"[127.0.0.11]:{sshd.port} ssh-ed25519 " in empty.read_text()


def test_changed_host_key_is_refused(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.11]:{sshd.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2]) + "\n")
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": hosts["web-1"]}, {"web-1": {"known_hosts": str(forged)}})
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(PLAYBOOK))
    assert result.returncode == 1
    assert "host key CHANGED" in result.stdout and "SHA256:" in result.stdout
    assert not (hosts["web-1"] / "restarts.log").exists()


BAD_PLAYBOOKS = {
    "malformed": ("- name: x\n  hosts: all\n  steps: [\n", "bad.yml:4", "malformed YAML"),
    "python_tag": ("- name: x\n  hosts: all\n  steps:\n    - name: s\n      command: !!python/object/apply:os.system [id]\n",
                   "bad.yml:5", "python tags are refused"),
    "duplicate_key": ("- name: x\n  hosts: all\n  hosts: web\n  steps: []\n", "bad.yml:3", "duplicate key 'hosts'"),
    "unknown_kind": ("- name: x\n  hosts: all\n  steps:\n    - name: s\n      python_asignment: {path: /x, name: A, value: 1}\n",
                     "bad.yml:5", "did you mean 'python_assignment'"),
    "unknown_arg": ("- name: x\n  hosts: all\n  steps:\n    - name: s\n      python_assignment: {path: /x, name: A, valeu: 1}\n",
                    "bad.yml:5", "did you mean 'value'"),
    "missing_var": ("- name: x\n  hosts: all\n  steps:\n    - name: the edit\n      python_assignment:\n"
                    "        path: \"{{ compose_dirr }}/x.py\"\n        name: A\n        value: 1\n",
                    "bad.yml:4", "step 'the edit': undefined variable 'compose_dirr'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLAYBOOKS))
def test_bad_playbooks_exit_3_before_contacting_hosts(case: str, tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    text, where, message = BAD_PLAYBOOKS[case]
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    # an unreachable inventory proves no host was contacted: contacting would give exit 1
    inventory = write_inventory(tmp_path / "inv.yml", sshd, {"web-1": hosts["web-1"]}, {"web-1": {"port": 1}})
    result = remediate("apply", "x", "-i", str(inventory), "-p", str(bad))
    assert result.returncode == 3, result.stdout + result.stderr
    assert where in result.stderr and message in result.stderr, result.stderr
    assert result.stdout == ""


def test_bad_inventory_exits_3(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("hosts:\n  web-1:\n    adress: 127.0.0.11\n")
    result = remediate("apply", "x", "-i", str(inv), "-p", str(PLAYBOOK))
    assert result.returncode == 3
    assert f"{inv}:3" in result.stderr and "did you mean 'address'" in result.stderr


def test_validate_and_inventory_commands(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:
    ok = remediate("validate", str(PLAYBOOK))
    assert ok.returncode == 0 and "1 play(s), 5 step(s)" in ok.stdout
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    shown = remediate("inventory", "x", "-i", str(inventory), "--format", "json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["hosts"]["web-2"]["vars"]["project_dir"] == str(hosts["web-2"])
