"""ssh_config loading and where each host's connection goes: a table of inventories, configs and flags."""
from __future__ import annotations

from pathlib import Path

import pytest

from remediate.core.errors import InputError
from remediate.transport.sshconfig import Defaults, SSHConfig, load, parse_jump, resolve

ME = Defaults(local_user="me")


def config(tmp_path: Path, text: str, name: str = "config") -> SSHConfig:
    path = tmp_path / name
    path.write_text(text)
    return load(str(path))


ALIAS = """
Host web-alias
    HostName 10.0.0.5
    Port 2222
    User deploy
    IdentityFile ~/.ssh/web_key
    IdentityFile ~/.ssh/second

Host bastion
    HostName 192.0.2.1
    User jumper
    IdentityFile ~/.ssh/jump_key

Host behind
    HostName 10.0.0.9
    ProxyJump bastion

Host *.internal
    ProxyJump bastion
    UserKnownHostsFile ~/.ssh/internal_known_hosts ~/.ssh/more

Host *
    ServerAliveInterval 30
"""


def test_an_alias_gives_hostname_port_user_and_identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    route = resolve("web-alias", config(tmp_path, ALIAS), ME)
    t = route.target
    assert (t.hostname, t.port, t.user, route.jumps) == ("10.0.0.5", 2222, "deploy", ())
    assert [k.path for k in t.keys] == [f"{tmp_path}/.ssh/web_key", f"{tmp_path}/.ssh/second"]
    assert not any(k.explicit for k in t.keys) and not t.default_keys
    assert t.known_name == "[10.0.0.5]:2222" and route.where == "deploy@10.0.0.5:2222"
    assert t.known_hosts == (f"{tmp_path}/.ssh/known_hosts", f"{tmp_path}/.ssh/known_hosts2")


def test_inventory_values_then_flags_then_ssh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config(tmp_path, ALIAS)
    route = resolve("web-1", cfg, Defaults(user="cli", private_key="/k/cli", local_user="me"), address="web-alias",
                    port=22, user="inv", identity_file="/k/inv", known_hosts="/kh", origin="host web-1 (inv.yml:3)")
    t = route.target
    assert (t.hostname, t.port, t.user) == ("10.0.0.5", 22, "inv")
    assert [(k.path, k.explicit) for k in t.keys] == [("/k/inv", True), ("/k/cli", True),
                                                      (f"{tmp_path}/.ssh/web_key", False), (f"{tmp_path}/.ssh/second", False)]
    assert t.keys[0].origin == "identity_file of host web-1 (inv.yml:3)"
    assert t.known_hosts == ("/kh",)
    assert resolve("web-alias", cfg, Defaults(user="cli", local_user="me")).target.user == "cli"  # -u over ssh_config


def test_no_config_is_the_name_itself_on_port_22_as_the_local_user() -> None:
    route = resolve("10.1.1.1", SSHConfig(), ME)
    assert route.where == "me@10.1.1.1:22" and route.target.default_keys and route.target.known_name == "10.1.1.1"


def test_proxy_jump_from_ssh_config_and_the_jump_gets_its_own_entry(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    route = resolve("behind", config(tmp_path, ALIAS), Defaults(private_key="/k/cli", local_user="me"),
                    known_hosts="/kh")
    (jump,) = route.jumps
    assert (jump.hostname, jump.port, jump.user) == ("192.0.2.1", 22, "jumper")
    assert [k.path for k in jump.keys] == [f"{tmp_path}/.ssh/jump_key"]  # no --private-key for a jump (ssh -J)
    assert jump.known_hosts == ("/kh",)  # checked against the host's known_hosts too
    assert route.where == "me@10.0.0.9:22 via jumper@192.0.2.1:22"


def test_proxy_jump_in_the_inventory_wins_and_none_disables(tmp_path: Path) -> None:
    cfg = config(tmp_path, ALIAS)
    route = resolve("behind", cfg, ME, proxy_jump="ops@127.0.0.71:2201,[::1]:2202")
    assert [j.where for j in route.jumps] == ["ops@127.0.0.71:2201", "me@[::1]:2202"]
    assert resolve("behind", cfg, ME, proxy_jump="none").jumps == ()


def test_a_jump_host_does_not_jump_through_itself(tmp_path: Path) -> None:
    cfg = config(tmp_path, "Host *\n    ProxyJump bastion\nHost bastion\n    HostName 192.0.2.1\n")
    assert resolve("bastion", cfg, ME).jumps == ()
    assert [j.hostname for j in resolve("app", cfg, ME).jumps] == ["192.0.2.1"]


def test_the_first_jumps_own_proxy_jump_applies_and_loops_are_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, "Host a\n    ProxyJump outer\nHost b\n    ProxyJump x\nHost loop1\n    ProxyJump loop2\n"
                           "Host loop2\n    ProxyJump loop1\n")
    assert [j.name for j in resolve("t", cfg, ME, proxy_jump="a,b").jumps] == ["outer", "a", "b"]
    with pytest.raises(InputError, match="loop"):
        resolve("t", cfg, ME, proxy_jump="loop1")


@pytest.mark.parametrize("text, expected", [
    ("bastion", (None, "bastion", None)),
    ("ops@bastion:2200", ("ops", "bastion", 2200)),
    ("ssh://ops@10.0.0.1:22", ("ops", "10.0.0.1", 22)),
    ("[2001:db8::1]:2222", (None, "2001:db8::1", 2222)),
])
def test_jump_syntax(text: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_jump(text, "x") == expected


@pytest.mark.parametrize("text", ["", "a:b", "ops@", "h:99999"])
def test_bad_jump_syntax_names_where(text: str) -> None:
    with pytest.raises(InputError, match="proxy_jump of web-1"):
        parse_jump(text, "proxy_jump of web-1")


def test_include_globs_relative_and_nested(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("Host inc-b\n    Port 2002\n")
    (tmp_path / "conf.d" / "a.conf").write_text("Include nested.conf\nHost inc-a\n    Port 2001\n")
    (tmp_path / "nested.conf").write_text("Host nested\n    Port 2003\n")
    cfg = config(tmp_path, "Include conf.d/*.conf\n")
    assert [resolve(h, cfg, ME).target.port for h in ("inc-a", "inc-b", "nested")] == [2001, 2002, 2003]
    assert cfg.files[1:] == (str(tmp_path / "conf.d/a.conf"), str(tmp_path / "nested.conf"),
                             str(tmp_path / "conf.d/b.conf"))


def test_an_unreadable_line_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        config(tmp_path, "Host x\n    HostName\n")
    assert str(exc.value).startswith(f"{tmp_path / 'config'}:2: ")
    (tmp_path / "inc").write_text("\n\nMatch localnetwork 10.0.0.0/8\n")
    with pytest.raises(InputError) as exc:
        config(tmp_path, "Include inc\n", name="c2")
    assert str(exc.value).startswith(f"{tmp_path / 'inc'}:3: ") and "not supported" in str(exc.value)
    with pytest.raises(InputError) as exc:
        config(tmp_path, "Match host\n", name="c3")
    assert str(exc.value).startswith(f"{tmp_path / 'c3'}:1: ")


def test_a_bad_port_in_ssh_config(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Port 'abc' for x"):
        resolve("x", config(tmp_path, "Host x\n    Port abc\n"), ME)


def test_files_read_by_default_and_the_environment_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host u\n    Port 2\n")
    assert load(env={}).files[0] == str(tmp_path / ".ssh/config")
    assert load(env={"REMEDIATE_SSH_CONFIG": "none"}).files == ()
    other = tmp_path / "other"
    other.write_text("Host u\n    Port 3\n")
    assert load(env={"REMEDIATE_SSH_CONFIG": str(other)}).files == (str(other),)
    assert load(str(other), env={"REMEDIATE_SSH_CONFIG": "none"}).files == (str(other),)  # the flag wins
    assert load(enabled=False, env={"REMEDIATE_SSH_CONFIG": str(other)}).files == ()
    with pytest.raises(InputError, match="does not exist"):
        load(str(tmp_path / "missing"))


def test_identities_only_host_key_alias_and_key_dedup(tmp_path: Path) -> None:
    cfg = config(tmp_path, "Host x\n    IdentitiesOnly yes\n    HostKeyAlias x-key\n    IdentityFile /k/a\n")
    t = resolve("x", cfg, ME, identity_file="/k/a").target
    assert t.identities_only and t.known_name == "x-key"
    assert [(k.path, k.explicit) for k in t.keys] == [("/k/a", True)]
