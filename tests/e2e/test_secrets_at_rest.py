"""The webhook URL is a secret (issue 14, item 7): masked in output, never in a world-readable file.

`drift --install` keeps it out of the cron and systemd files (the job reads it from a 0600 file); `--notify`
takes a URL, `@FILE` (a file only its owner can read) or the environment (REMEDIATE_NOTIFY_URL); the drift
database is 0600 and does not hold the URL. A Slack-style URL carries its credential in the path.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cliutil import FIXTURES, cli_env, local_inventory, projects
from tests.conftest import remediate
from tests.e2e.test_drift_cli import Receiver

PLAYBOOK = FIXTURES / "playbooks" / "drift.yml"
SECRET = "T0A1B2C3D/B0E1F2G3H/q9w8e7r6t5y4u3i2o1p0"  # the credential part of a Slack webhook URL


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.url = receiver.url.replace("/hook", f"/services/{SECRET}")
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    return local_inventory(tmp_path / "inv.yml", projects(tmp_path, "web-1"))


def files_holding(root: Path, text: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and text.encode() in path.read_bytes():
            found.append(path)
    return found


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("kind", ["cron", "systemd"])
def test_install_keeps_the_url_out_of_the_job_files_and_the_job_still_posts(
        tmp_path: Path, state_dir: Path, inv: Path, hook: Receiver, kind: str) -> None:
    root = tmp_path / "root"
    result = remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health", "--install", kind,
                       "--schedule", "*/30 * * * *", "--notify", hook.url, "--root", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    written = [p for p in root.rglob("*") if p.is_file()]
    assert written and not files_holding(root, SECRET), "the URL is in a job file"
    holders = files_holding(state_dir, SECRET)
    assert holders and all(private(p) for p in holders), [(p, oct(p.stat().st_mode)) for p in holders]

    if kind == "cron":
        line = next(ln for ln in (root / "etc" / "cron.d" / "remediate-drift-x").read_text().splitlines()
                    if re.match(r"^[*/0-9,-]+ ", ln))
        command = line.split(None, 6)[6]  # five schedule fields, the user, then the command
    else:
        unit = (root / "etc" / "systemd" / "system" / "remediate-drift-x.service").read_text()
        command = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart=")).split("=", 1)[1]
        command = f"cd {tmp_path} && REMEDIATE_STATE_DIR={state_dir} {command}"
    job = subprocess.run(["sh", "-c", command], env=cli_env(state_dir), capture_output=True, text=True, timeout=120)
    assert job.returncode in (0, 2), job.stdout + job.stderr  # drift found: 2 (cron appends to its log: 0)
    assert len(hook.bodies) == 1 and "drift on" in str(hook.bodies[0]["text"])

    removed = remediate("drift", "x", "--uninstall", kind, "--root", str(root), cwd=tmp_path)
    assert removed.returncode == 0


def test_the_url_is_masked_in_output_and_not_kept_in_the_database(tmp_path: Path, state_dir: Path, inv: Path,
                                                                   hook: Receiver) -> None:
    outputs = [remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health", "--notify", hook.url,
                         "--format", fmt) for fmt in ("text", "json")]
    assert [o.returncode for o in outputs] == [2, 2]
    assert len(hook.bodies) == 1  # posted once: the second run saw the same drift
    first = outputs[0].stdout + outputs[0].stderr
    assert "sent to " in first and "********" in first, first
    for out in outputs:
        assert SECRET not in out.stdout + out.stderr
    assert not files_holding(state_dir, SECRET), "the URL is at rest in the state directory"
    database = state_dir / "drift.sqlite3"
    assert database.exists() and private(database), oct(database.stat().st_mode)


def test_a_failed_post_names_the_host_not_the_credential(tmp_path: Path, state_dir: Path, inv: Path,
                                                         hook: Receiver) -> None:
    dead = hook.url
    hook.close()
    out = remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health", "--notify", dead)
    assert out.returncode == 2
    assert "notification not sent: POST http://127.0.0.1:" in out.stderr, out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_notify_from_a_private_file_or_the_environment(tmp_path: Path, state_dir: Path, inv: Path,
                                                       hook: Receiver) -> None:
    url_file = tmp_path / "hook.url"
    url_file.write_text(hook.url + "\n")
    url_file.chmod(0o644)
    loose = remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health", "--notify", f"@{url_file}")
    assert loose.returncode == 3 and str(url_file) in loose.stderr and "600" in loose.stderr, loose.stderr
    assert hook.bodies == []
    url_file.chmod(0o600)
    ok = remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health", "--notify", f"@{url_file}")
    assert ok.returncode == 2 and len(hook.bodies) == 1, ok.stdout + ok.stderr

    fixed = remediate("apply", "x", "-i", str(inv), "-p", str(PLAYBOOK))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    env = remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health",
                    env={"REMEDIATE_NOTIFY_URL": hook.url})
    assert env.returncode == 0 and len(hook.bodies) == 2, env.stdout + env.stderr  # the same URL: drift cleared
    assert "drift cleared" in str(hook.bodies[1]["text"])
    assert SECRET not in env.stdout + env.stderr


def test_the_state_directory_files_are_private(tmp_path: Path, state_dir: Path, inv: Path) -> None:
    remediate("drift", "x", "-i", str(inv), "-p", str(PLAYBOOK), "--no-health")
    for name in ("audit.jsonl",):
        assert private(state_dir / name), name
    assert os.access(state_dir, os.W_OK)
