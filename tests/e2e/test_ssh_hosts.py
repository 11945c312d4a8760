"""SSH as hosts really are, against real sshd processes the suite starts: ~/.ssh/config aliases, jump hosts,
the agent and passphrase keys, sudo (`become`), key hygiene and what a failed connection says.

Black-box: the CLI as a user runs it, with HOME pointed at a home of the test's own (its ~/.ssh/config,
known_hosts and default keys) and no agent unless the test starts one: nothing here reads the developer's ~/.ssh.
The users are created by the suite (tests.sshlab, `rmdt-XXXXXXXX`) and removed afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import sshlab
from tests.conftest import ROOT

pytestmark = pytest.mark.ssh

FIXTURES = ROOT / "tests" / "fixtures"
FIX = FIXTURES / "playbooks" / "fix.yml"
SETTINGS = "edms/settings/base.py"
APPS = "apps/audit/apps.py"
SCHEDULER_LINE = "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'"
IMPORT_LINE = "        import apps.audit.integrity_tasks  # noqa"
PASSPHRASE = "correct horse battery staple"
KEY_ENV, BECOME_ENV = sshlab.KEY_ENV, sshlab.BECOME_ENV
run, run_on_tty = sshlab.run, sshlab.run_on_tty


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report of a run (--format json), with the run's output in the assertion message when it is not."""
    try:
        doc: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not a JSON report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}") from None
    return doc


def message(result: subprocess.CompletedProcess[str], host: str) -> str:
    """The one message of an unreachable host in a JSON report."""
    doc = report(result)
    entry = doc["hosts"][host]
    assert entry["status"] == "unreachable", (entry, result.stderr)
    text: str = entry["message"]
    return text


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    """A handled failure is a message, never a traceback or a library's log on stderr."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert "paramiko" not in result.stderr.lower(), result.stderr


# ---------------------------------------------------------------------------------------------------- the hosts


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """The module's directory every test user can traverse (removed afterwards)."""
    path = sshlab.base_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[sshlab.Server]:
    """An sshd on 127.0.0.61 and 127.0.0.62."""
    srv = sshlab.start_sshd(base / "sshd", ["127.0.0.61", "127.0.0.62"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keys(base: Path, server: sshlab.Server) -> dict[str, Path]:
    """Client keys authorized for root: `plain` (no passphrase) and `locked` (PASSPHRASE)."""
    plain = sshlab.keygen(base / "keys" / "plain")
    locked = sshlab.keygen(base / "keys" / "locked", PASSPHRASE)
    for key in (plain, locked):
        server.authorize("root", key)
    return {"plain": plain, "locked": locked}


@pytest.fixture
def home(tmp_path: Path, server: sshlab.Server) -> Path:
    """A user's home: ~/.ssh (0700) with a known_hosts that knows the server, nothing else."""
    path = tmp_path / "home"
    ssh = path / ".ssh"
    ssh.mkdir(parents=True)
    ssh.chmod(0o700)
    (ssh / "known_hosts").write_text("\n".join(server.known_hosts_lines()) + "\n")
    return path


def ssh_config(home: Path, text: str, name: str = "config") -> Path:
    path = home / ".ssh" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def private_copy(key: Path, dest: Path, mode: int = 0o600) -> Path:
    """A copy of a key pair at dest (private part with `mode`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(key, dest)
    shutil.copyfile(f"{key}.pub", f"{dest}.pub")
    dest.chmod(mode)
    return dest


def project(where: Path, owner: sshlab.User | None = None) -> Path:
    """A copy of the broken fixture project (owned by owner, else root)."""
    dest = Path(shutil.copytree(FIXTURES / "project", where))
    if owner is not None:
        subprocess.run(["chown", "-R", f"{owner.uid}:{owner.gid}", str(dest)], check=True)
    return dest


def fixed(path: Path) -> bool:
    return SCHEDULER_LINE in (path / SETTINGS).read_text() and IMPORT_LINE in (path / APPS).read_text()


def snapshot(path: Path) -> dict[str, bytes]:
    return {rel: (path / rel).read_bytes() for rel in (SETTINGS, APPS)}


def inventory(path: Path, hosts: dict[str, dict[str, Any]], **top: Any) -> Path:
    """An inventory file (JSON is YAML) with these hosts."""
    path.write_text(json.dumps({**top, "hosts": hosts}, indent=2) + "\n")
    return path


def project_vars(proj: Path, backups: Path) -> dict[str, str]:
    return {"project_dir": str(proj), "backup_dir": str(backups)}


def root_host(server: sshlab.Server, key: Path | None, proj: Path, tmp: Path, **spec: Any) -> dict[str, Any]:
    host: dict[str, Any] = {"address": server.address, "port": server.port, "user": "root"}
    if key is not None:
        host["identity_file"] = str(key)
    host.update(spec)
    host["vars"] = project_vars(proj, tmp / "backups")
    return host


def apply(inv: Path, home: Path, *extra: str, playbook: Path = FIX, agent: Path | None = None,
          **env: str) -> subprocess.CompletedProcess[str]:
    return run("apply", "x", "-i", str(inv), "-p", str(playbook), "--format", "json", "--connect-timeout", "5",
               *extra, home=home, agent=agent, **env)


# ---------------------------------------------------------------------------------------------------- baseline


def test_an_inventory_with_every_value_explicit_still_works(tmp_path: Path, home: Path, server: sshlab.Server,
                                                          keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, keys["plain"], proj, tmp_path,
                                                              known_hosts=str(home / ".ssh" / "known_hosts"))})
    result = apply(inv, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)


# ---------------------------------------------------------------------------------------------------- ssh_config


def test_an_alias_from_ssh_config_gives_hostname_port_user_and_identity(
        tmp_path: Path, home: Path, server: sshlab.Server, keys: dict[str, Path]) -> None:
    private_copy(keys["plain"], home / ".ssh" / "lab_key")
    ssh_config(home, f"""# as users write it
Host web-alias
    HostName {server.address}
    Port {server.port}
    User root
    IdentityFile ~/.ssh/lab_key

Host *
    ServerAliveInterval 30
""")
    one, two = project(tmp_path / "p1"), project(tmp_path / "p2")
    inv = inventory(tmp_path / "inv.yml", {
        # no address: the host's name is what `ssh web-alias` would connect to
        "web-alias": {"vars": project_vars(one, tmp_path / "backups")},
        # an alias as the address
        "web-2": {"address": "web-alias", "vars": project_vars(two, tmp_path / "backups")},
    })
    result = apply(inv, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["summary"]["changed"] == 2
    assert fixed(one) and fixed(two)


def test_inventory_values_win_over_ssh_config(tmp_path: Path, home: Path, server: sshlab.Server,
                                              keys: dict[str, Path]) -> None:
    ssh_config(home, f"Host stale\n    HostName {server.address}\n    Port 1\n    User nobody\n")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": {
        "address": "stale", "port": server.port, "user": "root", "identity_file": str(keys["plain"]),
        "vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)


def test_included_ssh_config_files_are_read(tmp_path: Path, home: Path, server: sshlab.Server,
                                            keys: dict[str, Path]) -> None:
    private_copy(keys["plain"], home / ".ssh" / "lab_key")
    ssh_config(home, "Include config.d/*.conf\n")
    ssh_config(home, f"Host web-inc\n    HostName {server.address}\n    Port {server.port}\n    User root\n"
                     "    IdentityFile ~/.ssh/lab_key\n", name="config.d/lab.conf")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-inc": {"vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)


def test_ssh_config_flag_reads_that_file_only(tmp_path: Path, home: Path, server: sshlab.Server,
                                              keys: dict[str, Path]) -> None:
    ssh_config(home, f"Host web-alias\n    HostName {server.address}\n    Port 1\n")  # the user's: would fail
    other = tmp_path / "fleet_ssh_config"
    other.write_text(f"Host web-alias\n    HostName {server.address}\n    Port {server.port}\n    User root\n"
                     f"    IdentityFile {keys['plain']}\n")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-alias": {"vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, home, "--ssh-config", str(other))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)


def test_no_ssh_config_flag_ignores_the_users_file(tmp_path: Path, home: Path, server: sshlab.Server,
                                                   keys: dict[str, Path]) -> None:
    # the user's file supplies the only key; without it nothing authenticates
    ssh_config(home, f"Host {server.address}\n    IdentityFile {keys['plain']}\n")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, None, proj, tmp_path)})
    with_config = apply(inv, home, "--check")
    assert with_config.returncode == 2, with_config.stdout + with_config.stderr
    without = apply(inv, home, "--check", "--no-ssh-config")
    assert without.returncode == 1
    text = message(without, "web-1")
    assert "authentication failed" in text and "root@" in text, text
    no_traceback(without)


def test_a_broken_ssh_config_is_an_input_error_naming_file_and_line(tmp_path: Path, home: Path,
                                                                    server: sshlab.Server) -> None:
    config = ssh_config(home, "Host web-alias\n    HostName\n")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-alias": {"vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, home)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{config}:2" in result.stderr, result.stderr
    missing = apply(inv, home, "--ssh-config", str(tmp_path / "nope"))
    assert missing.returncode == 3 and str(tmp_path / "nope") in missing.stderr, missing.stderr


def test_user_and_private_key_flags(tmp_path: Path, home: Path, server: sshlab.Server,
                                    keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    bare = {"address": server.address, "port": server.port, "vars": project_vars(proj, tmp_path / "backups")}
    inv = inventory(tmp_path / "inv.yml", {"web-1": bare})
    result = apply(inv, home, "-u", "root", "--private-key", str(keys["plain"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)
    # the inventory's own user wins over -u (as Ansible's ansible_user wins over -u)
    inv = inventory(tmp_path / "inv2.yml", {"web-1": {**bare, "user": "root"}})
    again = apply(inv, home, "--user", "nobody", "--private-key", str(keys["plain"]))
    assert again.returncode == 0, again.stdout + again.stderr


# ---------------------------------------------------------------------------------------------------- the agent and passphrases


def test_a_passphrase_key_held_by_the_agent(tmp_path: Path, home: Path, server: sshlab.Server,
                                            keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    with sshlab.agent(tmp_path / "agent") as agent:
        agent.add(keys["locked"], PASSPHRASE)
        # no identity at all: the agent's key
        inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, None, proj, tmp_path)})
        result = apply(inv, home, agent=agent.sock)
        assert result.returncode == 0, result.stdout + result.stderr
        assert fixed(proj)
        # the encrypted file named as the identity: the agent's copy signs, nothing asks for the passphrase
        proj2 = project(tmp_path / "p2")
        inv = inventory(tmp_path / "inv2.yml", {"web-1": root_host(server, keys["locked"], proj2, tmp_path)})
        again = apply(inv, home, agent=agent.sock)
        assert again.returncode == 0, again.stdout + again.stderr
        assert fixed(proj2)


def test_a_passphrase_key_with_the_passphrase_in_the_environment(tmp_path: Path, home: Path,
                                                                 server: sshlab.Server, keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, keys["locked"], proj, tmp_path)})
    result = apply(inv, home, **{KEY_ENV: PASSPHRASE})
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)
    assert PASSPHRASE not in result.stdout + result.stderr


def test_a_passphrase_key_without_a_passphrase_says_how_to_give_one(tmp_path: Path, home: Path,
                                                                    server: sshlab.Server, keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    before = snapshot(proj)
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, keys["locked"], proj, tmp_path)})
    result = apply(inv, home)
    assert result.returncode == 1
    text = message(result, "web-1")
    assert str(keys["locked"]) in text and "passphrase" in text and KEY_ENV in text, text
    assert "\n" not in text
    no_traceback(result)
    wrong = apply(inv, home, **{KEY_ENV: "not it"})
    assert wrong.returncode == 1
    text = message(wrong, "web-1")
    assert str(keys["locked"]) in text and "passphrase" in text, text
    assert "not it" not in wrong.stdout + wrong.stderr
    assert snapshot(proj) == before


def test_a_passphrase_is_asked_once_on_a_terminal_for_every_host_using_the_key(
        tmp_path: Path, home: Path, server: sshlab.Server, keys: dict[str, Path]) -> None:
    one, two = project(tmp_path / "p1"), project(tmp_path / "p2")
    inv = inventory(tmp_path / "inv.yml", {
        "web-1": root_host(server, keys["locked"], one, tmp_path),
        "web-2": {**root_host(server, keys["locked"], two, tmp_path), "address": server.addresses[1]},
    })
    prompt = f"Enter passphrase for key '{keys['locked']}':"
    rc, shown, seen = run_on_tty(["apply", "x", "-i", str(inv), "-p", str(FIX)], home, {prompt: PASSPHRASE})
    assert rc == 0, shown
    assert seen[prompt] == 1, shown
    assert PASSPHRASE not in shown
    assert fixed(one) and fixed(two)


# ---------------------------------------------------------------------------------------------------- key hygiene


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_others_can_read_is_refused_as_openssh_does(tmp_path: Path, home: Path, server: sshlab.Server,
                                                                  keys: dict[str, Path], mode: int) -> None:
    loose = private_copy(keys["plain"], tmp_path / "keys" / "loose", mode)
    proj = project(tmp_path / "p")
    before = snapshot(proj)
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, loose, proj, tmp_path)})
    result = apply(inv, home)
    assert result.returncode == 1, result.stdout + result.stderr
    text = message(result, "web-1")
    assert str(loose) in text and f"{mode:04o}" in text and "chmod 600" in text, text
    assert "\n" not in text
    assert snapshot(proj) == before
    no_traceback(result)


def test_a_missing_identity_file_is_named(tmp_path: Path, home: Path, server: sshlab.Server) -> None:
    proj = project(tmp_path / "p")
    missing = tmp_path / "keys" / "id_gone"
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, missing, proj, tmp_path)})
    result = apply(inv, home)
    assert result.returncode == 1, result.stdout + result.stderr
    text = message(result, "web-1")
    assert str(missing) in text and "identity file" in text and "does not exist" in text, text
    no_traceback(result)


# ---------------------------------------------------------------------------------------------------- what a failed connection says


def test_a_refused_connection_says_so_and_where(tmp_path: Path, home: Path, server: sshlab.Server,
                                                keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, keys["plain"], proj, tmp_path, port=1)})
    result = apply(inv, home)
    assert result.returncode == 1
    text = message(result, "web-1")
    assert f"root@{server.address}:1" in text and "connection refused" in text, text
    assert "\n" not in text
    no_traceback(result)


def test_a_host_that_never_sends_a_banner_times_out_within_the_connect_timeout(
        tmp_path: Path, home: Path, server: sshlab.Server, keys: dict[str, Path]) -> None:
    proj = project(tmp_path / "p")
    with sshlab.silent_listener(server.address) as port:
        inv = inventory(tmp_path / "inv.yml", {
            "silent": root_host(server, keys["plain"], proj, tmp_path, port=port),
            "web-1": root_host(server, keys["plain"], project(tmp_path / "p2"), tmp_path),
        })
        result = run("apply", "x", "-i", str(inv), "-p", str(FIX), "--format", "json", "--connect-timeout", "2",
                     home=home)
    assert result.returncode == 1
    text = message(result, "silent")
    assert f"{server.address}:{port}" in text and "no SSH banner" in text and "2 s" in text, text
    assert report(result)["hosts"]["web-1"]["status"] == "changed"
    no_traceback(result)


def test_a_changed_host_key_says_which_key_and_where(tmp_path: Path, home: Path, server: sshlab.Server,
                                                     keys: dict[str, Path]) -> None:
    other = sshlab.keygen(tmp_path / "other")
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{sshlab.known_hosts_name(server.address, server.port)} {sshlab.public_key(other)}\n")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": root_host(server, keys["plain"], proj, tmp_path,
                                                              known_hosts=str(forged))})
    result = apply(inv, home)
    assert result.returncode == 1
    text = message(result, "web-1")
    assert "host key CHANGED" in text and server.host_fingerprint in text and str(forged) in text, text
    name = sshlab.known_hosts_name(server.address, server.port)
    assert f"ssh-keygen -R '{name}' -f {forged}" in text, text  # what to do about it
    assert f"{server.address}:{server.port}" in text and "\n" not in text, text
    no_traceback(result)


# ---------------------------------------------------------------------------------------------------- jump hosts


JUMP_ADDRESS, TARGET_ADDRESS, NOBODY_ADDRESS = "127.0.0.71", "127.0.0.72", "127.0.0.73"


@pytest.fixture(scope="module")
def behind(base: Path) -> Iterator[tuple[sshlab.Server, sshlab.Server]]:
    """(jump, target): the target's sshd listens on 127.0.0.72:22 in a network namespace of its own; the jump
    host (127.0.0.71) is the only way there."""
    target = sshlab.start_hidden_sshd(base / "target", TARGET_ADDRESS, 22)
    jump = sshlab.start_jump_sshd(base / "jump", JUMP_ADDRESS, target)
    yield jump, target
    jump.stop()
    target.stop()


@pytest.fixture
def jump_home(home: Path, behind: tuple[sshlab.Server, sshlab.Server], keys: dict[str, Path]) -> Path:
    """A home whose known_hosts knows the jump host and the target, and whose default key (~/.ssh/id_ed25519)
    both accept for root (a jump host gets no -i: OpenSSH gives it its own ssh_config entry, agent and
    default keys)."""
    jump, target = behind
    for srv in (jump, target):
        srv.authorize("root", keys["plain"])
    with (home / ".ssh" / "known_hosts").open("a") as fh:
        fh.write("\n".join(jump.known_hosts_lines() + target.known_hosts_lines()) + "\n")
    private_copy(keys["plain"], home / ".ssh" / "id_ed25519")
    return home


def accepted(srv: sshlab.Server) -> int:
    """How many logins this sshd accepted so far."""
    return srv.log.count("Accepted publickey")


def test_the_target_is_not_reachable_without_the_jump_host(tmp_path: Path, jump_home: Path) -> None:
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": {"address": TARGET_ADDRESS, "user": "root",
                                                     "identity_file": str(jump_home / ".ssh" / "id_ed25519"),
                                                     "vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, jump_home)
    assert result.returncode == 1
    assert report(result)["hosts"]["web-1"]["status"] == "unreachable"


def test_proxy_jump_in_the_inventory_one_connection_per_host(tmp_path: Path, jump_home: Path,
                                                             behind: tuple[sshlab.Server, sshlab.Server]) -> None:
    jump, target = behind
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": {
        "address": TARGET_ADDRESS, "user": "root", "proxy_jump": f"root@{JUMP_ADDRESS}:{jump.port}",
        "vars": project_vars(proj, tmp_path / "backups")}})
    jumps, logins = accepted(jump), accepted(target)
    result = apply(inv, jump_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)
    # the whole run (five steps and a handler) over one connection to the target, carried by one to the jump
    assert (accepted(jump) - jumps, accepted(target) - logins) == (1, 1)


def test_proxy_jump_from_ssh_config(tmp_path: Path, jump_home: Path,
                                    behind: tuple[sshlab.Server, sshlab.Server]) -> None:
    jump, _ = behind
    ssh_config(jump_home, f"""Host bastion
    HostName {JUMP_ADDRESS}
    Port {jump.port}
    User root

Host app-behind
    HostName {TARGET_ADDRESS}
    User root
    ProxyJump bastion
""")
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"app-behind": {"vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, jump_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fixed(proj)


@pytest.mark.parametrize("unknown", ["jump", "target"])
def test_host_keys_are_checked_strictly_through_the_jump_host(tmp_path: Path, jump_home: Path, unknown: str,
                                                              behind: tuple[sshlab.Server, sshlab.Server]) -> None:
    jump, target = behind
    strict = tmp_path / "known_hosts"
    known = {"jump": jump.known_hosts_lines(), "target": target.known_hosts_lines()}
    strict.write_text("\n".join(line for name, lines in known.items() if name != unknown for line in lines) + "\n")
    proj = project(tmp_path / "p")
    before = snapshot(proj)
    inv = inventory(tmp_path / "inv.yml", {"web-1": {
        "address": TARGET_ADDRESS, "user": "root", "proxy_jump": f"root@{JUMP_ADDRESS}:{jump.port}",
        "known_hosts": str(strict), "vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, jump_home)
    assert result.returncode == 1
    text = message(result, "web-1")
    srv = jump if unknown == "jump" else target
    where = f"{JUMP_ADDRESS}:{jump.port}" if unknown == "jump" else f"{TARGET_ADDRESS}:22"
    assert "is not in" in text and srv.host_fingerprint in text and where in text, text
    assert f"via root@{JUMP_ADDRESS}:{jump.port}" in text or unknown == "jump", text
    assert snapshot(proj) == before
    assert strict.read_text().count("\n") == len(known["jump" if unknown == "target" else "target"])
    no_traceback(result)


def test_a_target_the_jump_host_cannot_reach_says_so_and_via_which_jump(
        tmp_path: Path, jump_home: Path, behind: tuple[sshlab.Server, sshlab.Server]) -> None:
    jump, _ = behind
    proj = project(tmp_path / "p")
    inv = inventory(tmp_path / "inv.yml", {"web-1": {
        "address": NOBODY_ADDRESS, "user": "root", "proxy_jump": f"root@{JUMP_ADDRESS}:{jump.port}",
        "vars": project_vars(proj, tmp_path / "backups")}})
    result = apply(inv, jump_home)
    assert result.returncode == 1
    text = message(result, "web-1")
    assert f"{NOBODY_ADDRESS}:22" in text and f"via root@{JUMP_ADDRESS}:{jump.port}" in text, text
    assert "refused" in text and "\n" not in text, text
    no_traceback(result)


# ---------------------------------------------------------------------------------------------------- become (sudo)


LAB_BACKEND = ROOT / "lab" / "stack" / "backend"
LAB_SETTINGS = "backend/edms/settings/base.py"
LAB_APPS = "backend/apps/audit/apps.py"

# The two file edits of the shipped fixes (playbooks/celery-*.yml), with their arguments as shipped, on a
# copy of the lab's backend: the compose steps around them need a lab stack (tests/e2e/test_ssh_become_lab.py).
SEED_EDITS = """\
- name: the shipped fixes' file edits, as {who}
  hosts: all
  {become}
  defaults:
    source_dir: backend
    beat_scheduler: django_celery_beat.schedulers:DatabaseScheduler
  steps:
    - name: beat's settings module sets the database scheduler
      python_assignment:
        path: "{{{{ compose_dir }}}}/backend/edms/settings/base.py"
        name: CELERY_BEAT_SCHEDULER
        value: "{{{{ beat_scheduler }}}}"
        after: CELERY_BEAT_SCHEDULE_FILENAME
    - name: task modules that nothing imports
      celery_task_modules:
        source: "{{{{ compose_dir }}}}/{{{{ source_dir }}}}"
      register: found
    - name: AppConfig.ready() imports them
      python_statement:
        path: "{{{{ compose_dir }}}}/{{{{ source_dir }}}}/{{{{ item.apps_file }}}}"
        function: "{{{{ item.config_class }}}}.ready"
        statement: "import {{{{ item.module }}}}  # noqa: F401 (registers its Celery tasks)"
        module: "{{{{ item.apps_file[:-3] | replace('/', '.') }}}}"
      loop: "{{{{ found.modules }}}}"
    - name: who edited them
      command: {{argv: [id, -un], read_only: true}}
      register: who
    - name: the edits ran as {who}
      assert:
        that: ["who.stdout == '{who}\\n'"]
"""


def seed_edits(path: Path, who: str, become: str) -> Path:
    path.write_text(SEED_EDITS.format(who=who, become=become))
    return path


def root_owned_backend(where: Path) -> Path:
    """compose_dir with a copy of the lab's backend, every file root's, mode 0644 (directories 0755)."""
    compose_dir = where / "edms"
    shutil.copytree(LAB_BACKEND, compose_dir / "backend")
    for path in [compose_dir, *compose_dir.rglob("*")]:
        os.chown(path, 0, 0)
        path.chmod(0o755 if path.is_dir() else 0o644)
    return compose_dir


def tree(compose_dir: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every file under compose_dir: relative path -> (sha256, mode, uid, gid)."""
    import hashlib

    out = {}
    for path in sorted(compose_dir.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(compose_dir))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                       st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


@pytest.fixture(scope="module")
def deploy(base: Path, server: sshlab.Server) -> Iterator[tuple[sshlab.User, Path]]:
    """A non-root user `deploy` may sudo to anyone without a password; (user, its key)."""
    user = sshlab.add_user(base, sudo="ALL=(ALL:ALL) NOPASSWD: ALL")
    key = sshlab.keygen(base / "keys" / f"{user.name}")
    server.authorize(user.name, key)
    yield user, key
    sshlab.remove_user(user)


@pytest.fixture(scope="module")
def deploy_with_password(base: Path, server: sshlab.Server) -> Iterator[tuple[sshlab.User, Path, str]]:
    """A non-root user whose sudo asks for its password; (user, its key, the password)."""
    password = "sudo pass 'word' $x"
    user = sshlab.add_user(base, password=password, sudo="ALL=(ALL:ALL) ALL")
    key = sshlab.keygen(base / "keys" / f"{user.name}")
    server.authorize(user.name, key)
    yield user, key, password
    sshlab.remove_user(user)


@pytest.fixture
def edms(tmp_path: Path) -> Path:
    """A root-owned compose_dir (the lab backend's files) in a directory only root can enter."""
    return root_owned_backend(tmp_path / "srv")


def deploy_host(server: sshlab.Server, user: sshlab.User, key: Path, compose_dir: Path, backups: Path,
                **spec: Any) -> dict[str, Any]:
    return {"address": server.address, "port": server.port, "user": user.name, "identity_file": str(key),
            "vars": {"compose_dir": str(compose_dir), "backup_dir": str(backups)}, **spec}


def assert_seed_edits_done(compose_dir: Path, before: dict[str, tuple[str, int, int, int]]) -> None:
    after = tree(compose_dir)
    assert set(after) == set(before), "files appeared or vanished in the project"
    changed = {rel for rel in after if after[rel][0] != before[rel][0]}
    assert changed == {"backend/edms/settings/base.py", "backend/apps/audit/apps.py"}
    assert all(after[rel][1:] == before[rel][1:] == (0o644, 0, 0) for rel in after), "mode or owner changed"
    settings = (compose_dir / "backend/edms/settings/base.py").read_text()
    assert "CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'\n" + SCHEDULER_LINE + "\n" in settings
    assert "import apps.audit.integrity_tasks  # noqa: F401 (registers its Celery tasks)" in \
        (compose_dir / "backend/apps/audit/apps.py").read_text()


def test_without_become_a_deploy_user_cannot_edit_root_owned_files(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy: tuple[sshlab.User, Path], edms: Path) -> None:
    user, key = deploy
    before = tree(edms)
    inv = inventory(tmp_path / "inv.yml", {"web-1": deploy_host(server, user, key, edms, tmp_path / "backups")})
    result = apply(inv, home, playbook=seed_edits(tmp_path / "edits.yml", user.name, ""))
    assert result.returncode == 1, result.stdout + result.stderr
    assert tree(edms) == before


def test_become_in_the_play_a_deploy_user_makes_the_seed_edits_through_sudo(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy: tuple[sshlab.User, Path], edms: Path) -> None:
    user, key = deploy
    before = tree(edms)
    backups = tmp_path / "backups"
    inv = inventory(tmp_path / "inv.yml", {"web-1": deploy_host(server, user, key, edms, backups)})
    playbook = seed_edits(tmp_path / "edits.yml", "root", "become: true")
    check = apply(inv, home, "--check", playbook=playbook)
    assert check.returncode == 2, check.stdout + check.stderr
    assert tree(edms) == before
    result = apply(inv, home, playbook=playbook)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_seed_edits_done(edms, before)
    # backed up as root: the originals, 0600 root, outside the project, in this run's directory
    run_id = report(result)["run_id"]
    for rel in ("backend/edms/settings/base.py", "backend/apps/audit/apps.py"):
        backup = backups / run_id / (edms / rel).relative_to("/")
        assert backup.read_bytes() == (LAB_BACKEND.parent / rel).read_bytes()
        st = backup.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
    again = apply(inv, home, playbook=playbook)
    assert again.returncode == 0, again.stdout + again.stderr
    assert report(again)["summary"]["changed"] == 0


def test_become_in_the_inventory_and_the_default_backup_root_of_root(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy: tuple[sshlab.User, Path], edms: Path) -> None:
    user, key = deploy
    before = tree(edms)
    spec = deploy_host(server, user, key, edms, tmp_path / "unused", become=True)
    del spec["vars"]["backup_dir"]  # resolved on the host as the become user: root's /var/lib/remediate/backups
    inv = inventory(tmp_path / "inv.yml", {"web-1": spec})
    result = apply(inv, home, playbook=seed_edits(tmp_path / "edits.yml", "root", ""))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_seed_edits_done(edms, before)
    run_id = report(result)["run_id"]
    backup = Path("/var/lib/remediate/backups") / run_id / (edms / LAB_SETTINGS).relative_to("/")
    try:
        assert backup.read_bytes() == (LAB_BACKEND.parent / LAB_SETTINGS).read_bytes()
    finally:
        shutil.rmtree(Path("/var/lib/remediate/backups") / run_id, ignore_errors=True)


def test_become_per_step_and_become_user(tmp_path: Path, home: Path, server: sshlab.Server, base: Path,
                                         deploy: tuple[sshlab.User, Path], edms: Path) -> None:
    user, key = deploy
    app = sshlab.add_user(base)
    try:
        owned = project(app.home / "proj", owner=app)  # only app can write it
        owned.chmod(0o700)
        subprocess.run(["chown", f"{app.uid}:{app.gid}", str(app.home)], check=True)
        playbook = tmp_path / "steps.yml"
        playbook.write_text(f"""\
- name: some steps as root, some as app, some as the login user
  hosts: all
  steps:
    - name: as the login user
      command: {{argv: [id, -un], read_only: true}}
      register: login
    - name: as root
      command: {{argv: [id, -un], read_only: true}}
      become: true
      register: rooted
    - name: root's file
      python_assignment:
        path: "{{{{ compose_dir }}}}/backend/edms/settings/base.py"
        name: CELERY_BEAT_SCHEDULER
        value: django_celery_beat.schedulers:DatabaseScheduler
        after: CELERY_BEAT_SCHEDULE_FILENAME
      become: true
    - name: app's file, backed up in app's own backup root
      python_assignment:
        path: "{owned}/edms/settings/base.py"
        name: CELERY_BEAT_SCHEDULER
        value: django_celery_beat.schedulers:DatabaseScheduler
        after: CELERY_BEAT_SCHEDULE_FILENAME
      become: true
      become_user: {app.name}
    - name: as app
      command: {{argv: [sh, -c, 'id -un; echo "$HOME"'], read_only: true}}
      become: true
      become_user: {app.name}
      register: as_app
    - name: each step ran as its user
      assert:
        that:
          - "login.stdout == '{user.name}\\n'"
          - "rooted.stdout == 'root\\n'"
          - "as_app.stdout == '{app.name}\\n{app.home}\\n'"
""")
        spec = deploy_host(server, user, key, edms, tmp_path / "unused")
        del spec["vars"]["backup_dir"]
        spec["vars"]["compose_dir"] = str(edms)
        inv = inventory(tmp_path / "inv.yml", {"web-1": spec})
        result = apply(inv, home, playbook=playbook)
        assert result.returncode == 0, result.stdout + result.stderr
        assert SCHEDULER_LINE in (owned / SETTINGS).read_text()
        st = (owned / SETTINGS).stat()
        assert (st.st_uid, st.st_gid) == (app.uid, app.gid)
        run_id = report(result)["run_id"]
        app_backup = app.home / ".local/state/remediate/backups" / run_id / (owned / SETTINGS).relative_to("/")
        assert app_backup.stat().st_uid == app.uid
        shutil.rmtree(Path("/var/lib/remediate/backups") / run_id, ignore_errors=True)
    finally:
        sshlab.remove_user(app)


def test_sudo_asking_for_a_password_is_refused_clearly_without_one(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy_with_password: tuple[sshlab.User, Path, str],
        edms: Path) -> None:
    user, key, _ = deploy_with_password
    before = tree(edms)
    inv = inventory(tmp_path / "inv.yml", {"web-1": deploy_host(server, user, key, edms, tmp_path / "b")})
    result = apply(inv, home, playbook=seed_edits(tmp_path / "edits.yml", "root", "become: true"))
    assert result.returncode == 1, result.stdout + result.stderr
    doc = report(result)
    text = json.dumps(doc["hosts"]["web-1"])
    assert "sudo" in text and "password" in text and "--ask-become-pass" in text and BECOME_ENV in text, text
    assert tree(edms) == before
    no_traceback(result)


def test_sudo_password_from_the_environment_and_a_wrong_one(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy_with_password: tuple[sshlab.User, Path, str],
        edms: Path) -> None:
    user, key, password = deploy_with_password
    before = tree(edms)
    inv = inventory(tmp_path / "inv.yml", {"web-1": deploy_host(server, user, key, edms, tmp_path / "b")})
    playbook = seed_edits(tmp_path / "edits.yml", "root", "become: true")
    wrong = apply(inv, home, playbook=playbook, **{BECOME_ENV: "wrong"})
    assert wrong.returncode == 1
    assert "sudo" in json.dumps(report(wrong)["hosts"]["web-1"]) and tree(edms) == before
    result = apply(inv, home, playbook=playbook, **{BECOME_ENV: password})
    assert result.returncode == 0, result.stdout + result.stderr
    assert_seed_edits_done(edms, before)
    assert password not in result.stdout + result.stderr
    assert password not in (Path(os.environ["REMEDIATE_STATE_DIR"]) / "audit.jsonl").read_text() \
        if (Path(os.environ["REMEDIATE_STATE_DIR"]) / "audit.jsonl").exists() else True


def test_ask_become_pass_prompts_once_on_a_terminal(
        tmp_path: Path, home: Path, server: sshlab.Server, deploy_with_password: tuple[sshlab.User, Path, str],
        edms: Path) -> None:
    user, key, password = deploy_with_password
    before = tree(edms)
    inv = inventory(tmp_path / "inv.yml", {"web-1": deploy_host(server, user, key, edms, tmp_path / "b")})
    playbook = seed_edits(tmp_path / "edits.yml", "root", "become: true")
    rc, shown, seen = run_on_tty(["apply", "x", "-i", str(inv), "-p", str(playbook), "--ask-become-pass"], home,
                                 {"BECOME password:": password})
    assert rc == 0, shown
    assert seen["BECOME password:"] == 1 and password not in shown
    assert_seed_edits_done(edms, before)


# ---------------------------------------------------------------------------------------------------- login shells


NOISY_BASHRC = """\
# a login shell that talks, on both streams, takes its time, and leaves no final newline
echo "Welcome to $(hostname), $USER"
echo "warning: motd cache is stale" >&2
printf 'half a line'
sleep 0.3
"""

EXACT = """\
- name: outputs are the command's, not the login shell's
  hosts: all
  steps:
    - name: plain
      command: {argv: [sh, -c, 'printf "exact out"; printf "exact err" >&2; exit 3'], read_only: true}
      register: plain
      failed_when: false
    - name: through sudo
      command: {argv: [sh, -c, 'printf "%s" "$(id -un)"; printf "exact err" >&2'], read_only: true}
      become: true
      register: rooted
    - name: nothing else came through
      assert:
        that:
          - "plain.stdout == 'exact out' and plain.stderr == 'exact err' and plain.rc == 3"
          - "rooted.stdout == 'root' and rooted.stderr == 'exact err' and rooted.rc == 0"
"""


@pytest.fixture(scope="module")
def noisy(base: Path, server: sshlab.Server) -> Iterator[tuple[sshlab.User, Path]]:
    """A sudo user whose login shell prints to stdout and stderr and sleeps before every command."""
    user = sshlab.add_user(base, sudo="ALL=(ALL:ALL) NOPASSWD: ALL", bashrc=NOISY_BASHRC)
    key = sshlab.keygen(base / "keys" / f"{user.name}")
    server.authorize(user.name, key)
    yield user, key
    sshlab.remove_user(user)


def test_a_noisy_slow_login_shell_changes_no_result(tmp_path: Path, home: Path, server: sshlab.Server,
                                                    noisy: tuple[sshlab.User, Path], base: Path) -> None:
    user, key = noisy
    proj = project(base / "projects" / user.name, owner=user)
    try:
        inv = inventory(tmp_path / "inv.yml", {"web-1": {
            "address": server.address, "port": server.port, "user": user.name, "identity_file": str(key),
            "vars": project_vars(proj, user.home / "backups")}})
        result = apply(inv, home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert fixed(proj)
        assert (proj / "restarts.log").read_text() == "restarted\n"
        assert "Welcome" not in result.stdout and "half a line" not in result.stdout
    finally:
        shutil.rmtree(base / "projects", ignore_errors=True)


def test_a_noisy_login_shell_and_sudo_keep_outputs_exact(tmp_path: Path, home: Path, server: sshlab.Server,
                                                         noisy: tuple[sshlab.User, Path]) -> None:
    user, key = noisy
    playbook = tmp_path / "exact.yml"
    playbook.write_text(EXACT)
    inv = inventory(tmp_path / "inv.yml", {"web-1": {
        "address": server.address, "port": server.port, "user": user.name, "identity_file": str(key)}})
    result = apply(inv, home, playbook=playbook)
    assert result.returncode == 0, result.stdout + result.stderr
