"""The floor: the benchmark workload as a bare paramiko script (one connection and one thread per host).

    floor.py HOSTS.json [--check]

HOSTS.json: [{"name", "address", "port", "user", "identity", "known_hosts", "project_dir"}, ...].
No framework: read the settings file, insert the line in Python, write it back, restart if it changed,
poll, read-only check. Check mode reads, prints the diff and runs the read-only check.
"""
from __future__ import annotations

import difflib
import json
import shlex
import sys
import threading
import time

import paramiko

LINE = "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n"
POLL = 'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; [ $n -ge 3 ]'
RESTART = 'echo restarted >> "$0"'


def run(client: paramiko.SSHClient, command: str, stdin: bytes | None = None) -> tuple[int, bytes]:
    chan = client.get_transport().open_session()  # type: ignore[union-attr]
    chan.exec_command(command)
    if stdin is not None:
        chan.sendall(stdin)
    chan.shutdown_write()
    out = b""
    while True:
        data = chan.recv(65536)
        if not data:
            break
        out += data
    rc = chan.recv_exit_status()
    chan.close()
    return rc, out


def patched(text: str) -> str:
    lines = text.splitlines(keepends=True)
    if LINE in lines:
        return text
    anchor = max(i for i, line in enumerate(lines) if line.startswith("CELERY_BEAT_SCHEDULE_FILENAME ="))
    return "".join(lines[: anchor + 1] + [LINE] + lines[anchor + 1 :])


def one(host: dict[str, str], check: bool, out: dict[str, str]) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(host["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host["address"], port=int(host["port"]), username=host["user"], key_filename=host["identity"],
        allow_agent=False, look_for_keys=False, timeout=10,
    )
    try:
        project = host["project_dir"]
        settings = f"{project}/edms/settings/base.py"
        rc, data = run(client, f"cat {shlex.quote(settings)}")
        assert rc == 0, f"{host['name']}: cannot read {settings}"
        before = data.decode()
        after = patched(before)
        report = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), settings, settings))
        if not check:
            if after != before:
                tmp = f"{settings}.tmp"
                rc, _ = run(client, f"cat > {shlex.quote(tmp)} && mv {shlex.quote(tmp)} {shlex.quote(settings)}",
                            after.encode())
                assert rc == 0, f"{host['name']}: cannot write {settings}"
            for attempt in range(5):
                rc, _ = run(client, f"sh -c {shlex.quote(POLL)} {shlex.quote(project + '/poll.count')}")
                if rc == 0:
                    break
                time.sleep(1)
            assert rc == 0, f"{host['name']}: poll never succeeded"
        rc, _ = run(client, f"grep -c CELERY_BEAT_SCHEDULE_FILENAME {shlex.quote(settings)}")
        assert rc == 0, f"{host['name']}: read-only check failed"
        if not check and after != before:
            rc, _ = run(client, f"sh -c {shlex.quote(RESTART)} {shlex.quote(project + '/restarts.log')}")
            assert rc == 0, f"{host['name']}: restart failed"
        out[host["name"]] = report
    finally:
        client.close()


def main() -> int:
    hosts = json.load(open(sys.argv[1]))
    check = "--check" in sys.argv[2:]
    out: dict[str, str] = {}
    threads = [threading.Thread(target=one, args=(h, check, out)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in sorted(out):
        print(f"{name}: {'changed' if out[name] else 'ok'}\n{out[name]}", end="")
    return 0 if len(out) == len(hosts) else 1


if __name__ == "__main__":
    sys.exit(main())
