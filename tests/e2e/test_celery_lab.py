"""The shipped Celery playbooks and `remediate diagnose` against a real broken lab stack, over a real sshd.

On each version set a stack of the write-up's server as it is (all ten rows enabled, "Send Test Email" on 31
February included, Celery's default beat sync) walks the user's path: diagnose (both faults) -> apply --check
--diff (diffs, the planned rebuild, and on the old set the planned disable of the row its beat dies on; nothing
touched) -> apply (fixed, verified by rows that show new runs, through the sync lag beat itself reports) ->
diagnose (clean) -> apply again (nothing changes) -> rollback (files and rows as they were). A second stack
proves verification is honest when it cannot succeed.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.conftest import LabFactory, Sshd, remediate
from tests.lab import VERSION_SETS, LabStack, Versions

pytestmark = pytest.mark.lab

SETTINGS = "backend/edms/settings/base.py"
APPS = "backend/apps/audit/apps.py"
SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
INTEGRITY = ("apps.audit.integrity_tasks.run_daily_integrity_check",
             "apps.audit.integrity_tasks.verify_audit_trail_checksums")
FEB31 = "Send Test Email"
ROLLOVER = "RuntimeError: unable to rollover, time specification is probably invalid"
INVALID = "ValueError: Invalid crontab: day_of_month '31' never occurs in month_of_year '2'."
DISABLE_STEP = "rows this beat would die on are disabled first (a row that can never fire loses nothing)"
SKIP_STEP = "rows this beat skips safely are left alone"


def containers(stack: LabStack) -> dict[str, tuple[str, str]]:
    """service -> (StartedAt, image id) of its container."""
    out = {}
    for service in ("backend", "celery_worker", "celery_beat"):
        cid = stack.compose("ps", "-q", service).stdout.strip()
        doc = json.loads(__import__("subprocess").run(["docker", "inspect", cid], capture_output=True, text=True,
                                                      check=True).stdout)[0]
        out[service] = (doc["State"]["StartedAt"], doc["Image"])
    return out


def sources(stack: LabStack) -> dict[str, bytes]:
    return {rel: (stack.dir / rel).read_bytes() for rel in (SETTINGS, APPS)}


def project_tree(stack: LabStack) -> dict[str, str]:
    """Every file of the compose project, build contexts included: relative path -> sha256."""
    return {str(p.relative_to(stack.dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in stack.dir.rglob("*") if p.is_file()}


def codes(diagnosis: dict[str, object]) -> set[str]:
    host = diagnosis["hosts"]["lab"]  # type: ignore[index]
    return {p["code"] for p in host["problems"]}  # type: ignore[index]


def beat_tables(stack: LabStack) -> str:
    """Every PeriodicTask row, the PeriodicTasks change marker and the schedules, as JSON: what the probes must not touch."""
    script = ("import json\nfrom django_celery_beat.models import PeriodicTask as P, PeriodicTasks as C, CrontabSchedule as S\n"
              "print(json.dumps([list(P.objects.order_by('pk').values()), list(C.objects.values()),"
              " list(S.objects.order_by('pk').values())], default=str))\n")
    result = stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def enabled(stack: LabStack, name: str) -> bool:
    script = f"from django_celery_beat.models import PeriodicTask as P; print(P.objects.get(name={name!r}).enabled)"
    result = stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def what_beat_does(stack: LabStack) -> str:
    """What this set's beat does with the 31-February row (seen on real containers of both sets)."""
    pins = stack.pinned()
    if stack.versions == "old":
        return f"celery {pins['celery']}'s beat dies on it once it runs the DatabaseScheduler: {ROLLOVER}"
    return f"celery {pins['celery']} / django-celery-beat {pins['django-celery-beat']} skip it ({INVALID})"


def periodic_rows(stack: LabStack) -> dict[str, tuple[str | None, int]]:
    script = ("import json\nfrom django_celery_beat.models import PeriodicTask as P\n"
              "print(json.dumps({t.name: [t.last_run_at and t.last_run_at.isoformat(), t.total_run_count]"
              " for t in P.objects.all()}))\n")
    result = stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    return {k: (v[0], v[1]) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_diagnose_check_apply_diagnose_apply_again(versions: Versions, tmp_path: Path, sshd: Sshd,
                                                   lab_factory: LabFactory) -> None:
    stack = lab_factory("baked", versions=versions)  # the write-up's server: every row enabled, Celery's default sync
    inventory = str(stack.inventory(tmp_path / "inv.yml", sshd))
    pins = stack.pinned()
    dies = versions == "old"  # celery 5.4.0's beat dies on the 31-February row; 5.7.0 / 2.9.0 skip it
    tables = beat_tables(stack)

    broken = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    found = codes(json.loads(broken.stdout))
    assert {"beat_scheduler", "beat_scheduler_setting", "unimported_task_module"} <= found, found
    host = json.loads(broken.stdout)["hosts"]["lab"]
    assert host["facts"]["beat"]["versions"]["celery"] == pins["celery"]
    assert host["facts"]["beat"]["versions"]["django_celery_beat"] == pins["django-celery-beat"]
    assert host["facts"]["beat"]["sync_lag"] == 185, "Celery's default sync: 180 s plus the scheduler's 5 s tick"
    feb31 = [w["message"] for w in host["warnings"] if w["code"] == "never_fires"]
    assert feb31 == [f"PeriodicTask {FEB31!r}: cron '0 0 31 2 *' (UTC) can never fire (enabled: {what_beat_does(stack)})"]
    text = remediate("diagnose", "lab", "-i", inventory)
    assert "celery.beat.PersistentScheduler" in text.stdout and "apps.audit.integrity_tasks" in text.stdout
    assert "crashes" not in text.stdout, "a generic claim about a version instead of what this beat does"
    # a stack started seconds ago has tasks whose last due time predates beat: "pending", not yet "never_run"
    assert re.search(r"task 'lab-heartbeat' \[(pending|never_run)\] .* last run never, runs 0", text.stdout), text.stdout

    before_files, before_containers, before_tree = sources(stack), containers(stack), project_tree(stack)
    check = remediate("apply", "lab", "-i", inventory, "--check", "--diff")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"--- lab:{stack.dir / SETTINGS}" in check.stdout
    assert f"+CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in check.stdout
    assert "+        import apps.audit.integrity_tasks" in check.stdout
    # both playbooks' reloads merged into one: one build, one recreate per service
    assert re.search(r"celery_worker, celery_beat: rebuild via backend \([^)]*backend/edms/settings/base\.py[^)]* in build context "
                     r"\./backend, not mounted", check.stdout), check.stdout
    row = f"PeriodicTask {FEB31!r}: enabled true -> false ({what_beat_does(stack)})"
    if dies:
        assert f"would {row}" in check.stdout
        assert (f"--- lab:django_celery_beat.PeriodicTask {FEB31!r} (pk " in check.stdout
                and f"@@ {what_beat_does(stack)} @@\n-enabled: true\n+enabled: false\n" in check.stdout), check.stdout
        # the row is disabled before the settings edit and the reload
        assert check.stdout.index(f"would {row}") < check.stdout.index(f"+CELERY_BEAT_SCHEDULER")
    else:
        assert "enabled true -> false" not in check.stdout
        warning = f"celery {pins['celery']} / django-celery-beat {pins['django-celery-beat']} skip {FEB31!r} ({INVALID}): left enabled"
        assert check.stdout.count(warning) == 1, check.stdout
    assert sources(stack) == before_files and containers(stack) == before_containers, "check mode touched the stack"
    assert beat_tables(stack) == tables, "diagnose or check mode (beat's probe) touched the database"

    if dies:
        refused = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler",
                            "-e", "never_firing_rows=refuse")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f'PeriodicTask "{FEB31}": {what_beat_does(stack)}' in refused.stdout, refused.stdout
        assert "would take beat down" in refused.stdout
        assert sources(stack) == before_files and beat_tables(stack) == tables, "refusing changed something"

    applied = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    steps = {s["name"]: s for s in json.loads(applied.stdout)["hosts"]["lab"]["steps"]}
    ran = steps["periodic tasks show runs after beat started"]
    assert ran["status"] == "ok" and "ran after celery_beat started" in ran["message"], ran
    assert "lab-heartbeat" in ran["message"]
    # the deadline waited through the sync lag beat's own scheduler reports (Celery's default: 180 s + 5 s tick)
    assert ran["data"]["sync_lag"] == 185 and "saves runs every 180 s" in ran["data"]["lag"], ran
    assert set(INTEGRITY) <= stack.registered_tasks()
    heartbeat_last, heartbeat_runs = periodic_rows(stack)["lab-heartbeat"]
    assert heartbeat_last is not None and heartbeat_runs > 0
    beat_file = stack.exec("celery_beat", "cat", "/app/edms/settings/base.py").stdout
    assert f"CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in beat_file, "the recreated beat container runs the new file"
    after = containers(stack)
    assert after["celery_beat"][1] != before_containers["celery_beat"][1], "beat runs a rebuilt image"
    warnings = [s["message"] for s in steps.values() if "skip 'Send Test Email'" in s["message"]]
    if dies:
        assert steps[DISABLE_STEP]["status"] == "changed" and not enabled(stack, FEB31)
        assert warnings == []
    else:
        assert steps[DISABLE_STEP]["status"] == "skipped" and enabled(stack, FEB31), "a row this beat skips was changed"
        assert len(warnings) == 1 and warnings[0].startswith(f"WARNING: celery {pins['celery']} / django-celery-beat")
    # both imported playbooks' reloads ran once, merged: one build of the image, one recreate per service
    host_doc = json.loads(applied.stdout)["hosts"]["lab"]
    handlers = [s for s in host_doc["steps"] if s["handler"]]
    assert [h["name"] for h in handlers] == ["reload worker + reload beat"], handlers
    commands = [c for a in handlers[0]["actions"] for c in a.split(": ", 2)[-1].split("; ")]
    assert [c for c in commands if " build " in c] == [c for c in commands if c.endswith(" build backend")], commands
    assert len([c for c in commands if " build " in c]) == 1, commands
    recreated = [w for c in commands if "--force-recreate" in c for w in c.split("--force-recreate")[1].split()]
    assert sorted(recreated) == ["celery_beat", "celery_worker"], commands
    assert host_doc["verified_s"] is not None and host_doc["verified_s"] > 0, host_doc["verified_s"]
    run_id = json.loads(applied.stdout)["run_id"]
    shown = remediate("audit", "show", run_id).stdout
    merged = next(line for line in shown.splitlines() if "reload: " in line)
    assert all(x in merged for x in ('"reload worker"', '"reload beat"', APPS, SETTINGS)), merged
    if dies:
        # written to the trail before it was made, with the row's before and after
        intent = shown.index(f"intent [{DISABLE_STEP}] PeriodicTask {FEB31!r}: enabled true -> false")
        assert intent < shown.index(f"result [{DISABLE_STEP}] ok") and "    -enabled: true" in shown[intent:]
    tree = project_tree(stack)
    assert sorted(tree) == sorted(before_tree), "apply added (or removed) a file in the project: a backup or temp file?"
    assert {rel for rel in tree if tree[rel] != before_tree[rel]} == {SETTINGS, APPS}
    in_image = stack.exec("celery_beat", "find", "/app", "-name", "*remediate*")
    assert in_image.returncode == 0 and in_image.stdout.strip() == "", "the rebuilt image carries a backup"

    clean = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert clean.returncode == 0, clean.stdout
    assert codes(json.loads(clean.stdout)) == set()
    feb31 = [w["message"] for w in json.loads(clean.stdout)["hosts"]["lab"]["warnings"] if w["code"] == "never_fires"]
    assert feb31 == [f"PeriodicTask {FEB31!r}: cron '0 0 31 2 *' (UTC) can never fire ("
                     + ("disabled: a manual-only task)" if dies else
                        f"enabled: {what_beat_does(stack).replace(' once it runs the DatabaseScheduler', '')})")]

    fixed_files = sources(stack)
    again = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    doc = json.loads(again.stdout)
    assert doc["summary"]["changed"] == 0 and doc["hosts"]["lab"]["status"] == "ok", doc["hosts"]["lab"]
    assert sources(stack) == fixed_files and containers(stack) == after, "a second apply changed something"
    assert enabled(stack, FEB31) is not dies

    # the trail is intact, and rolling the fixing run back restores the exact files and rows, and reloads
    assert remediate("audit", "verify").returncode == 0
    preview = remediate("rollback", run_id, "--check")
    assert preview.returncode == 2, preview.stdout + preview.stderr
    assert (f"would PeriodicTask {FEB31!r}: enabled false -> true" in preview.stdout) is dies, preview.stdout
    assert enabled(stack, FEB31) is not dies, "rollback --check changed the row"
    rolled = remediate("rollback", run_id, "--no-verify", timeout=1200)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert sources(stack) == before_files, "rollback did not restore the original files byte for byte"
    assert enabled(stack, FEB31), "rollback did not re-enable the row the run disabled"
    assert project_tree(stack) == before_tree, "after the rollback the project is exactly as it was"
    reloaded = containers(stack)
    assert reloaded["celery_beat"][0] > after["celery_beat"][0] and reloaded["celery_worker"][0] > after["celery_worker"][0]
    assert "CELERY_BEAT_SCHEDULER" not in stack.exec("celery_beat", "cat", "/app/edms/settings/base.py").stdout
    # beat was reloaded onto its old scheduler before the row came back: it is alive with the row enabled again
    assert stack.compose("ps", "--status", "running", "-q", "celery_beat").stdout.strip(), stack.logs("celery_beat")[-2000:]
    assert remediate("audit", "verify").returncode == 0


def test_verification_is_pending_or_fails_honestly(tmp_path: Path, sshd: Sshd, lab_factory: LabFactory) -> None:
    stack = lab_factory("baked", fast_sync=True)
    inventory = str(stack.inventory(tmp_path / "inv.yml", sshd))
    assert stack.compose("stop", "celery_worker").returncode == 0  # nothing will execute what beat sends

    pending = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler",
                        "--verify-timeout", "1s", timeout=1200)
    assert pending.returncode == 4, pending.stdout + pending.stderr
    # at :00, :15 and :30 seeded crontab rows fall due in the same minute as lab-heartbeat: the message names them all
    assert re.search(r"PENDING: (\S[^\n]*, )?lab-heartbeat(, [^\n]*)? first due", pending.stdout), pending.stdout
    assert "can be confirmed after" in pending.stdout
    assert "pending" in pending.stdout.split("RECAP")[1]
    assert "verified" not in pending.stdout.split("RECAP")[1], "a pending proof is not a verified host"

    failed = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler",
                       "-e", "verify_grace=15", timeout=1200)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "did not show a run by the deadline" in failed.stdout
    assert re.search(r"last seen: ([^\n]*; )?lab-heartbeat: last_run_at", failed.stdout), failed.stdout
    assert re.search(r"results since [0-9-]+ [0-9:]+Z 0\b", failed.stdout), failed.stdout  # none since beat's restart
    # the fast-sync variant's CELERY_BEAT_SYNC_EVERY = 1, as beat's own scheduler reports it
    assert "sync lag 10 s" in failed.stdout, failed.stdout
