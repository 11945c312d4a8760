"""`remediate drift` against a real sshd with plain-file playbooks (the health checks need the Docker lab)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sshd, remediate
from tests.e2e.test_ssh_cli import FIXTURES, SETTINGS, hosts, write_inventory  # noqa: F401 (fixture)

PLAYBOOK = FIXTURES / "playbooks" / "drift.yml"

pytestmark = pytest.mark.ssh


@pytest.fixture
def env(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> dict[str, str]:  # noqa: F811
    """A private state directory, so history and announcements start empty."""
    return {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}


def drift(inventory: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return remediate("drift", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--no-health", *extra, env=env)


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def test_drift_names_the_change_records_history_and_fix_ends_clean(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str]  # noqa: F811
) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    before = (hosts["web-1"] / SETTINGS).read_bytes()

    first = drift(inventory, env)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "DRIFT   playbook:drift" in first.stdout
    assert "beat uses the database scheduler" in first.stdout
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in first.stdout
    assert "drift found; exit 2" in first.stdout
    assert (hosts["web-1"] / SETTINGS).read_bytes() == before, "drift changed a file"

    doc = json.loads(drift(inventory, env, "--format", "json", "--limit", "web-2").stdout)
    assert doc["exit_code"] == 2 and doc["hosts"] == ["web-2"] and doc["drifted"] == ["web-2/playbook:drift"]

    fixed = drift(inventory, env, "--fix", "--limit", "web-1,web-3", "--format", "json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    doc = json.loads(fixed.stdout)
    assert doc["before"]["drifted"] == ["web-1/playbook:drift", "web-3/playbook:drift"]
    assert doc["fix"]["mode"] == "apply" and set(doc["fix"]["hosts"]) == {"web-1", "web-3"}
    assert doc["after"]["exit_code"] == 0 and doc["after"]["drifted"] == []
    assert "CELERY_BEAT_SCHEDULER" in (hosts["web-1"] / SETTINGS).read_text()
    assert (hosts["web-2"] / SETTINGS).read_bytes() == before, "--fix touched a host outside --limit"

    again = drift(inventory, env, "--limit", "web-1,web-3")
    assert again.returncode == 0 and "clean; exit 0" in again.stdout, again.stdout + again.stderr

    history = remediate("drift", "history", "x", env=env)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert len(lines) == 5
    assert "hosts=3  drift" in lines[0] and "web-1/playbook:drift, web-2/playbook:drift, web-3/playbook:drift" in lines[0]
    assert "hosts=2  clean (after fix)" in lines[3]
    assert "hosts=2  clean" in lines[4]
    records = json.loads(remediate("drift", "history", "x", "--format", "json", "--last", "2", env=env).stdout)
    assert [r["phase"] for r in records] == ["after-fix", "check"]


def test_junit_output_has_one_case_per_host_and_check(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str]) -> None:  # noqa: F811
    from junitparser import Failure, JUnitXml

    from tests.unit.test_junit import validate

    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    out = drift(inventory, env, "--format", "junit")
    assert out.returncode == 2
    validate(out.stdout)  # the Jenkins xunit plugin's junit-10.xsd
    (tmp_path / "drift.xml").write_text(out.stdout)
    xml = JUnitXml.fromfile(str(tmp_path / "drift.xml"))
    cases = [(suite.name, case.classname, case.name, [type(r) for r in case.result]) for suite in xml for case in suite]
    shown = str(PLAYBOOK.relative_to(ROOT))  # the suite runs the CLI from the checkout: the path is relative to it
    assert cases == [(f"{h}: {shown}", f"x.{h}", "playbook:drift", [Failure]) for h in ("web-1", "web-2", "web-3")]
    assert xml.failures == 3 and xml.errors == 0 and xml.tests == 3
    assert [suite._elem.get("file") for suite in xml] == [shown] * 3
    # each case's time is its steps' time on that host, measured: a real SSH round trip is never 0.000
    assert all(0 < case.time < 60 for suite in xml for case in suite)


def test_notify_posts_only_when_drift_appears_or_clears(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str], receiver: Receiver  # noqa: F811
) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    first = drift(inventory, env, "--notify", receiver.url, "--limit", "web-1")
    masked = receiver.url.rsplit("/", 1)[0] + "/********"  # the URL is a credential: its path is masked
    assert first.returncode == 2 and f"notify: sent to {masked} (drift appeared)" in first.stdout
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["status"] == "drift" and body["appeared"] == ["web-1/playbook:drift"]
    assert "remediate drift x: drift on 1 check(s)" in str(body["text"])
    assert "new: web-1/playbook:drift (beat uses the database scheduler" in str(body["text"])

    same = drift(inventory, env, "--notify", receiver.url, "--limit", "web-1")
    assert same.returncode == 2 and "notify:" not in same.stdout
    assert len(receiver.bodies) == 1, "a run with unchanged drift notified again"

    fixed = drift(inventory, env, "--notify", receiver.url, "--limit", "web-1", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(receiver.bodies) == 2
    assert receiver.bodies[1]["status"] == "clean" and receiver.bodies[1]["cleared"] == ["web-1/playbook:drift"]
    assert "drift cleared" in str(receiver.bodies[1]["text"])


def test_a_failed_post_is_reported_and_does_not_change_the_exit_code(
    tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str], receiver: Receiver  # noqa: F811
) -> None:
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    dead = receiver.url
    receiver.close()  # nothing listens there any more
    out = drift(inventory, env, "--notify", dead, "--limit", "web-1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "notification not sent: POST" in out.stderr and "notify: not sent" in out.stdout
    alive = Receiver()
    try:
        # the failed announcement is retried by the next run, at the new address too
        out = drift(inventory, env, "--notify", alive.url, "--limit", "web-1")
        assert out.returncode == 2 and len(alive.bodies) == 1
    finally:
        alive.close()


def test_every_runs_repeatedly_and_stops_on_sigterm(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str]) -> None:  # noqa: F811
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts, {"web-2": {"port": 1}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "remediate", "drift", "x", "-i", str(inventory), "-p", str(PLAYBOOK), "--no-health",
         "--limit", "web-1,web-2", "--every", "1s"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the loop logs each run's end; an unreachable host is exit 1, and the loop goes on
            seen.append(line)
            if sum("ended with exit 1" in s for s in seen) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(seen) + err
    log = "".join(seen) + err
    assert "SIGTERM: stopping after the current run" in log and "stopped after" in log
    assert out.count("DRIFT x run") >= 2 and "ERROR   playbook:drift" in out and "unreachable" in out
    runs = json.loads(remediate("drift", "history", "x", "--format", "json", env=env).stdout)
    assert len(runs) >= 2 and all(r["exit_code"] == 1 for r in runs)


def test_bad_input_exits_3(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path], env: dict[str, str]) -> None:  # noqa: F811
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    for extra, message in (
        (("--notify", "ftp://127.0.0.1/x"), "--notify expects an http:// or https:// URL"),
        (("--every", "soon"), "--every: invalid duration"),
        (("--schedule", "* * * * *"), "--schedule goes with --install"),
        (("--limit", "nosuch"), "nosuch"),
    ):
        out = drift(inventory, env, *extra)
        assert out.returncode == 3 and message in out.stderr, (extra, out.stderr)
    out = remediate("drift", "x", "-i", str(tmp_path / "missing.yml"), env=env)
    assert out.returncode == 3 and "missing.yml" in out.stderr


def test_secrets_are_masked_in_every_output_and_in_history(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text("DEBUG = False\n")
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"hosts:\n  here:\n    connection: local\n    vars: {{p: {str(project)!r}, db_password: s3cret-Value}}\n")
    playbook = tmp_path / "pb.yml"
    playbook.write_text("- name: settings\n  hosts: all\n  steps:\n    - name: database password\n      lineinfile:\n"
                        "        path: \"{{ p }}/settings.py\"\n        line: \"PASSWORD = '{{ db_password }}'\"\n")
    base = ("drift", "x", "-i", str(inventory), "-p", str(playbook), "--no-health")
    outputs = [remediate(*base, "--format", fmt, env=env) for fmt in ("text", "json", "junit")]
    assert [o.returncode for o in outputs] == [2, 2, 2]
    assert "+PASSWORD = '********'" in outputs[0].stdout
    history = remediate("drift", "history", "x", "--format", "json", env=env).stdout
    page = tmp_path / "r.html"
    remediate("report", "x", "--html", str(page), env=env)
    for text in (*(o.stdout + o.stderr for o in outputs), history, page.read_text()):
        assert "s3cret-Value" not in text
        assert "********" in text
