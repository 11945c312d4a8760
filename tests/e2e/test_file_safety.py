"""Remote writes over a real SSH connection: compare-and-swap, backups, no half-written files."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from remediate.actions import ExecContext, WriteFile
from remediate.facts import WriteConflict, read_file
from remediate.inventory import Host
from remediate.steps.base import PlanContext
from remediate.steps.files import FileProbe, PythonAssignment
from remediate.transport.ssh import SSHOptions, SSHTransport
from tests.conftest import ROOT, Sshd

pytestmark = pytest.mark.ssh


@pytest.fixture
def transport(sshd: Sshd):  # type: ignore[no-untyped-def]
    host = Host("web-1", sshd.addresses[0], sshd.port, "root", str(sshd.identity), str(sshd.known_hosts))
    t = SSHTransport(host, SSHOptions())
    yield t
    t.close()


def plan_edit(transport: SSHTransport, path: Path) -> WriteFile:
    step = PythonAssignment(str(path), "CELERY_BEAT_SCHEDULER", "django_celery_beat.schedulers:DatabaseScheduler")
    probe = FileProbe(str(path))
    (action,) = step.plan({probe: probe.gather(transport)}, PlanContext("web-1", "r1"))
    assert isinstance(action, WriteFile)
    return action


def test_file_changed_between_read_and_write_is_left_alone(tmp_path: Path, transport: SSHTransport) -> None:
    path = Path(shutil.copy(ROOT / "tests/fixtures/project/edms/settings/base.py", tmp_path / "base.py"))
    action = plan_edit(transport, path)
    path.write_text("# someone else's edit\n")
    with pytest.raises(WriteConflict, match="changed since it was read"):
        action.execute(ExecContext("web-1", transport, "r1"))
    assert path.read_text() == "# someone else's edit\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.py"], "no temp file or backup left behind"


def test_write_is_atomic_with_a_backup_named_by_run(tmp_path: Path, transport: SSHTransport) -> None:
    path = Path(shutil.copy(ROOT / "tests/fixtures/project/edms/settings/base.py", tmp_path / "base.py"))
    original = path.read_bytes()
    action = plan_edit(transport, path)
    action.execute(ExecContext("web-1", transport, "20261124T000000Z-abc123"))
    assert path.read_bytes() == action.content
    assert (tmp_path / "base.py.remediate-20261124T000000Z-abc123.bak").read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.py", "base.py.remediate-20261124T000000Z-abc123.bak"]


def test_content_that_arrives_damaged_is_never_written(tmp_path: Path, transport: SSHTransport) -> None:
    from remediate.facts import _WRITE

    path = tmp_path / "base.py"
    path.write_bytes(b"original\n")
    expected = hashlib.sha256(b"original\n").hexdigest()
    promised = hashlib.sha256(b"new content\n").hexdigest()
    result = transport.run(["sh", "-c", _WRITE, "sh", str(path), expected, str(path) + ".bak", "644", promised],
                           stdin=b"new cont")  # cut short
    assert result.rc == 74 and "arrived damaged" in result.err
    assert path.read_bytes() == b"original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.py"], "no temp file or backup left behind"


def test_read_file_reports_missing_and_binary_exact(tmp_path: Path, transport: SSHTransport) -> None:
    assert not read_file(transport, str(tmp_path / "nope")).exists
    blob = bytes(range(256)) * 10
    (tmp_path / "blob").write_bytes(blob)
    fact = read_file(transport, str(tmp_path / "blob"))
    assert fact.exists and fact.data == blob
