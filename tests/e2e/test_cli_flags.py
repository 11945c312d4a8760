"""Flags as Ansible users type them (issue 14, item 1), driven through the CLI on `connection: local` hosts.

Short flags, comma lists of tags, `-e @file`/JSON/K=V, host patterns for `-l`, `--list-hosts`/`--list-tasks`,
`--start-at-task`, `-v` levels, `--version`; every usage error exits 3 with the subcommand's usage; no
abbreviations (`--che` is not `--check`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cliutil import FIXTURES, SETTINGS, audit_records, local_inventory, projects, ran, recorder, write_playbook
from tests.conftest import remediate



@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """Hosts a1, a2 (group alpha) and b1 (group beta), each with its own broken project."""
    hosts = projects(tmp_path, "a1", "a2", "b1")
    inv = local_inventory(tmp_path / "inv.yml", hosts, groups={"alpha": ["a1", "a2"], "beta": ["b1"]})
    return inv, hosts


def tagged_playbook(path: Path) -> Path:
    return write_playbook(path, {
        "name": "tagged", "hosts": "all",
        "steps": [
            recorder("beat", tags=["beat"]),
            recorder("tasks", tags=["tasks"]),
            recorder("other", tags=["other"]),
            recorder("always_step", tags=["always"]),
            recorder("never_step", tags=["never"]),
        ],
    })


# --- --version, usage errors, no abbreviations -------------------------------------------------------------


def test_version() -> None:
    result = remediate("--version")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"remediate \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


@pytest.mark.parametrize("argv, usage", [
    ([], "usage: remediate "),
    (["nosuch"], "usage: remediate "),
    (["apply"], "usage: remediate apply "),
    (["apply", "x", "--bogus"], "usage: remediate apply "),
    (["apply", "x", "--forks", "many"], "usage: remediate apply "),
    (["drift", "x", "--format", "xml"], "usage: remediate drift "),
    (["diagnose", "x", "--bogus"], "usage: remediate diagnose "),
    (["rollback"], "usage: remediate rollback "),
    (["audit"], "usage: remediate audit "),
    (["backups", "prune", "x"], "usage: remediate backups prune "),
    (["validate"], "usage: remediate validate "),
])
def test_usage_errors_exit_3_with_the_subcommands_usage(argv: list[str], usage: str) -> None:
    result = remediate(*argv)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert result.stderr.startswith(usage), result.stderr
    assert "remediate: error:" in result.stderr or "error:" in result.stderr
    assert result.stdout == ""


def test_help_exits_0_and_is_not_an_error() -> None:
    result = remediate("apply", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: remediate apply ")


def test_help_lists_the_ansible_flags() -> None:
    text = remediate("apply", "--help").stdout
    for flag in ("-i", "--inventory", "-l", "--limit", "-t", "--tags", "--skip-tags", "-e", "--extra-vars", "-C",
                 "--check", "-D", "--diff", "-f", "--forks", "-v", "--verbose", "--list-hosts", "--list-tasks",
                 "--start-at-task"):
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}([\s,=\]]|$)", text, re.M), flag


@pytest.mark.parametrize("abbreviation", ["--che", "--chec", "--tag", "--dif"])
def test_no_abbreviations(tmp_path: Path, three: tuple[Path, dict[str, Path]], abbreviation: str) -> None:
    inv, hosts = three
    playbook = tagged_playbook(tmp_path / "pb.yml")
    argv = ["apply", "x", "-i", str(inv), "-p", str(playbook), abbreviation]
    if abbreviation == "--tag":
        argv.append("beat")
    result = remediate(*argv)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"unrecognized arguments: {abbreviation}" in result.stderr
    assert all(ran(p) == [] for p in hosts.values()), "a refused command line ran steps"


# --- -C -D -f -----------------------------------------------------------------------------------------------


def test_short_check_and_diff_flags(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    before = {n: (p / SETTINGS).read_bytes() for n, p in hosts.items()}
    result = remediate("apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "-C", "-D",
                       "-l", "a1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--- a1:{hosts['a1'] / SETTINGS}" in result.stdout
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in result.stdout
    assert {n: (p / SETTINGS).read_bytes() for n, p in hosts.items()} == before, "check mode changed a file"


def test_forks_short_flag_and_bad_value(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    playbook = tagged_playbook(tmp_path / "pb.yml")
    ok = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-f", "1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert all(ran(p) == ["beat", "tasks", "other", "always_step"] for p in hosts.values())
    bad = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-f", "0")
    assert bad.returncode == 3 and "forks" in bad.stderr


# --- -l host patterns ---------------------------------------------------------------------------------------


def _limited(inv: Path, playbook: Path, pattern: str) -> set[str]:
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--limit", pattern, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads(result.stdout)["hosts"])


@pytest.mark.parametrize("pattern, expected", [
    pytest.param("all", {"a1", "a2", "b1"}, id="all"),
    pytest.param("alpha", {"a1", "a2"}, id="group"),
    pytest.param("a1,b1", {"a1", "b1"}, id="comma-list"),
    pytest.param("all,!a2", {"a1", "b1"}, id="exclusion"),
    pytest.param("!a2", {"a1", "b1"}, id="only-exclusion"),
    pytest.param("alpha:!a1", {"a2"}, id="colon-exclusion"),
    pytest.param("*1", {"a1", "b1"}, id="wildcard"),
    pytest.param("a?", {"a1", "a2"}, id="question-mark"),
    pytest.param("alpha,&*2", {"a2"}, id="intersection"),
    pytest.param("~b.*", {"b1"}, id="regex"),
    pytest.param("bet*", {"b1"}, id="group-wildcard"),
])
def test_limit_patterns(tmp_path: Path, three: tuple[Path, dict[str, Path]], pattern: str, expected: set[str]) -> None:
    inv, hosts = three
    playbook = tagged_playbook(tmp_path / "pb.yml")
    assert _limited(inv, playbook, pattern) == expected
    assert {n for n, p in hosts.items() if ran(p)} == expected


def test_limit_unknown_name_is_invalid_input(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    result = remediate("apply", "x", "-i", str(inv), "-p", str(tagged_playbook(tmp_path / "pb.yml")), "--limit", "a3")
    assert result.returncode == 3 and "'a3'" in result.stderr
    assert all(ran(p) == [] for p in hosts.values())


def test_limit_pattern_selecting_no_host_is_invalid_input(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    result = remediate("apply", "x", "-i", str(inv), "-p", str(tagged_playbook(tmp_path / "pb.yml")), "-l", "zz*")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "zz*" in result.stderr and "no host" in result.stderr
    assert all(ran(p) == [] for p in hosts.values())


# --- -t / --skip-tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, expected", [
    ([], ["beat", "tasks", "other", "always_step"]),
    (["-t", "beat,tasks"], ["beat", "tasks", "always_step"]),
    (["--tags", "beat", "--tags", "tasks"], ["beat", "tasks", "always_step"]),
    (["--tags", "beat, tasks"], ["beat", "tasks", "always_step"]),
    (["--skip-tags", "beat,tasks"], ["other", "always_step"]),
    (["-t", "never"], ["always_step", "never_step"]),
    (["-t", "all"], ["beat", "tasks", "other", "always_step"]),
    (["-t", "other", "--skip-tags", "always"], ["other"]),
])
def test_tags_and_skip_tags(tmp_path: Path, three: tuple[Path, dict[str, Path]], flags: list[str],
                            expected: list[str]) -> None:
    inv, hosts = three
    result = remediate("apply", "x", "-i", str(inv), "-p", str(tagged_playbook(tmp_path / "pb.yml")), "-l", "a1", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(hosts["a1"]) == expected


@pytest.mark.parametrize("flag", ["-t", "--tags", "--skip-tags"])
def test_unknown_tag_is_invalid_input(tmp_path: Path, three: tuple[Path, dict[str, Path]], flag: str,
                                      state_dir: Path) -> None:
    inv, hosts = three
    result = remediate("apply", "x", "-i", str(inv), "-p", str(tagged_playbook(tmp_path / "pb.yml")), flag, "beat,baet")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "'baet'" in result.stderr and "beat" in result.stderr  # names it, and what exists
    assert all(ran(p) == [] for p in hosts.values())
    assert not [r for r in audit_records(state_dir) if r["event"] == "run_start"], "no run may start"


def test_tags_apply_to_drift_too(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    playbook = write_playbook(tmp_path / "pb.yml", {
        "name": "two", "hosts": "all",
        "steps": [{"name": "settings", "tags": ["beat"], "python_assignment": {
            "path": "{{ project_dir }}/edms/settings/base.py", "name": "CELERY_BEAT_SCHEDULER", "value": "x.y:Z"}},
            {"name": "probe", "tags": ["probe"], "command": {"argv": ["true"], "read_only": True}}],
    })
    clean = remediate("drift", "x", "-i", str(inv), "-p", str(playbook), "--no-health", "-t", "probe")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    drifted = remediate("drift", "x", "-i", str(inv), "-p", str(playbook), "--no-health", "-t", "beat,probe")
    assert drifted.returncode == 2, drifted.stdout + drifted.stderr
    unknown = remediate("drift", "x", "-i", str(inv), "-p", str(playbook), "--no-health", "-t", "nosuch")
    assert unknown.returncode == 3


# --- -e -----------------------------------------------------------------------------------------------------


def _vars_playbook(path: Path) -> Path:
    return write_playbook(path, {
        "name": "vars", "hosts": "all", "defaults": {"a": "da", "b": "db", "c": "dc", "d": "dd", "nested": {}},
        "steps": [{"name": "dump", "command": {"argv": [
            "sh", "-c", 'printf %s "$1" > "$0"', "{{ project_dir }}/vars.json",
            "{{ {'a': a, 'b': b, 'c': c, 'd': d, 'nested': nested} | to_json }}"]}}],
    })


def _dumped(project: Path) -> dict[str, object]:
    return json.loads((project / "vars.json").read_text())


def test_extra_vars_from_yaml_and_json_files_inline_json_and_key_value_pairs(
        tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    (tmp_path / "vars.yml").write_text("a: from_yaml\nnested:\n  deep: [1, 2]\n")
    (tmp_path / "vars.json").write_text('{"b": "from_json"}')
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_vars_playbook(tmp_path / "pb.yml")), "-l", "a1",
                       "-e", f"@{tmp_path / 'vars.yml'}", "--extra-vars", f"@{tmp_path / 'vars.json'}",
                       "-e", '{"c": 3}', "-e", "d=four c=5")
    assert result.returncode == 0, result.stdout + result.stderr
    # later -e wins (c: 3 from JSON, then 5 from K=V), values from files keep their YAML types
    assert _dumped(hosts["a1"]) == {"a": "from_yaml", "b": "from_json", "c": 5, "d": "four",
                                    "nested": {"deep": [1, 2]}}


def test_extra_vars_key_value_still_works(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_vars_playbook(tmp_path / "pb.yml")), "--limit", "a1",
                       "-e", "a=1", "--extra-vars", "b=two")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _dumped(hosts["a1"])["a"] == 1 and _dumped(hosts["a1"])["b"] == "two"


@pytest.mark.parametrize("value, says", [
    pytest.param("@{tmp}/nosuch.yml", "nosuch.yml: cannot read"),
    # a path without @ (Ansible: "Please prepend extra_vars filename ... with '@'")
    pytest.param("{tmp}/vars.yml", "'@'"),
    pytest.param("@{tmp}/list.yml", "mapping"),
    pytest.param('{{"a": 1', "malformed"),
    pytest.param("1bad=x", "1bad"),
])
def test_bad_extra_vars_are_invalid_input(tmp_path: Path, three: tuple[Path, dict[str, Path]], value: str,
                                          says: str) -> None:
    inv, hosts = three
    (tmp_path / "vars.yml").write_text("a: 1\n")
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_vars_playbook(tmp_path / "pb.yml")),
                       "-e", value.format(tmp=tmp_path))
    assert result.returncode == 3, result.stdout + result.stderr
    assert says in result.stderr
    assert all(not (p / "vars.json").exists() for p in hosts.values())


def test_secret_from_an_extra_vars_file_is_masked(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    (tmp_path / "secret.yml").write_text("api_token: s3cr3t-value-42\n")
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "steps": [
        {"name": "use", "command": {"argv": ["echo", "{{ api_token }}"]}}]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-l", "a1", "-e", f"@{tmp_path / 'secret.yml'}",
                       "-vv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cr3t-value-42" not in result.stdout + result.stderr
    assert "********" in result.stdout


# --- --list-hosts, --list-tasks, --start-at-task -----------------------------------------------------------


def _unreachable_inventory(tmp_path: Path) -> Path:
    """Two SSH hosts nobody listens for: listing must not contact them."""
    (tmp_path / "known_hosts").write_text("")
    doc = {"hosts": {name: {"address": "127.0.0.1", "port": 1, "user": "root",
                            "known_hosts": str(tmp_path / "known_hosts"), "vars": {"project_dir": "/nonexistent"}}
                     for name in ("far-1", "far-2")},
           "groups": {"far": ["far-1", "far-2"]}}
    path = tmp_path / "far.yml"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("command", ["apply", "drift", "diagnose"])
def test_list_hosts_contacts_no_host(tmp_path: Path, command: str, state_dir: Path) -> None:
    inv = _unreachable_inventory(tmp_path)
    playbook = tagged_playbook(tmp_path / "pb.yml")
    argv = [command, "x", "-i", str(inv), "--list-hosts", "-l", "all,!far-2"]
    if command != "diagnose":
        argv += ["-p", str(playbook)]
    result = remediate(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\s+far-1$", result.stdout, re.M), result.stdout
    assert "far-2" not in result.stdout
    if command != "diagnose":
        assert "hosts (1):" in result.stdout and "tagged" in result.stdout  # per play, as ansible-playbook shows
    assert not [r for r in audit_records(state_dir) if r["event"] == "run_start"], "listing is not a run"


def test_list_tasks_shows_the_selected_steps_and_their_tags(tmp_path: Path, state_dir: Path) -> None:
    inv = _unreachable_inventory(tmp_path)
    playbook = tagged_playbook(tmp_path / "pb.yml")
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--list-tasks", "--skip-tags", "tasks")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any(line.startswith("beat") and "TAGS: [beat]" in line for line in lines), result.stdout
    assert any(line.startswith("always_step") for line in lines)
    # ansible-playbook's "tasks:" header is no step named tasks
    assert not any(line.split("\t")[0] in ("tasks", "never_step") for line in lines), result.stdout
    assert not [r for r in audit_records(state_dir) if r["event"] == "run_start"]


def test_start_at_task(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, hosts = three
    playbook = tagged_playbook(tmp_path / "pb.yml")
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-l", "a1", "--start-at-task", "tasks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(hosts["a1"]) == ["tasks", "other", "always_step"]
    unknown = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-l", "a2", "--start-at-task", "taks")
    assert unknown.returncode == 3 and "'taks'" in unknown.stderr
    assert ran(hosts["a2"]) == []


# --- -v / -vv / -vvv ----------------------------------------------------------------------------------------


def _verbose_playbook(path: Path) -> Path:
    return write_playbook(path, {"name": "verbose", "hosts": "all", "steps": [
        {"name": "talk", "command": {"argv": ["sh", "-c", "echo out-line-42; echo err-line-43 >&2"]}},
        {"name": "guarded", "command": {"argv": ["true"], "creates": "/nonexistent/marker-44"}},
    ]})


def test_verbosity_levels(tmp_path: Path, three: tuple[Path, dict[str, Path]]) -> None:
    inv, _ = three
    playbook = _verbose_playbook(tmp_path / "pb.yml")

    def run(*flags: str) -> str:
        result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "-l", "a1", *flags)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    duration = re.compile(r"^a1 \| \w+ +\| talk .*\(\d+\.\d+ s\)", re.M)
    printed = re.compile(r"^ +(out-line-42|err-line-43)$", re.M)  # a line of the command's own output
    quiet = run()
    assert not duration.search(quiet) and not printed.search(quiet), quiet
    assert "sh -c 'echo out-line-42; echo err-line-43 >&2'" in quiet  # the step's argv, as every action is shown
    v = run("-v")
    assert duration.search(v), v
    assert not printed.search(v), v
    vv = run("-vv")
    assert {m.group(1) for m in printed.finditer(vv)} == {"out-line-42", "err-line-43"}, vv
    assert "test -e /nonexistent/marker-44" not in vv  # a probe's command is transport detail
    vvv = run("-vvv")
    assert re.search(r"test -e /nonexistent/marker-44", vvv), vvv  # every command the transport runs


def test_inventory_takes_a_limit_pattern(three: tuple[Path, dict[str, Path]]) -> None:
    inv, _ = three
    shown = json.loads(remediate("inventory", "x", "-i", str(inv), "-l", "all,!a2", "--format", "json").stdout)
    assert sorted(shown["hosts"]) == ["a1", "b1"]
    assert remediate("inventory", "x", "-i", str(inv), "-l", "zz*").returncode == 3
