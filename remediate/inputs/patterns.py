"""Host patterns and tag selection as Ansible users write them (pure)."""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

SPECIAL_TAGS = ("always", "never")
SELECTOR_TAGS = ("all", "tagged", "untagged")


def split_pattern(pattern: str) -> list[str]:
    """'a,b', 'a:b' -> parts (a comma wins over colons, as in ansible-core's split_host_pattern)."""
    parts = pattern.split(",") if "," in pattern else re.findall(r"(?:[^\s:\[\]]|\[[^\]]*\])+", pattern)
    return [p.strip() for p in parts if p.strip()]


def _glob(part: str) -> bool:
    return part.startswith("~") or any(c in part for c in "*?[")


def _matcher(part: str) -> re.Pattern[str]:
    try:
        return re.compile(part[1:] if part.startswith("~") else fnmatch.translate(part))
    except re.error as exc:
        raise ValueError(f"invalid host pattern {part!r}: {exc}") from None


def match_hosts(pattern: str, hosts: Sequence[str], groups: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    """(hosts the pattern selects in inventory order, plain names that matched nothing)."""
    parts = split_pattern(pattern)
    regular = [p for p in parts if p[0] not in "!&"]
    ordered = (regular or ["all"]) + [p for p in parts if p[0] == "&"] + [p for p in parts if p[0] == "!"]
    unknown: list[str] = []
    chosen: list[str] = []
    for part in ordered:
        name = part[1:] if part[0] in "!&" else part
        that = _one(name, hosts, groups)
        if not that and not _glob(name) and name != "all":
            unknown.append(name)
        if part[0] == "!":
            chosen = [h for h in chosen if h not in that]
        elif part[0] == "&":
            chosen = [h for h in chosen if h in that]
        else:
            chosen += [h for h in that if h not in chosen]
    order = {h: i for i, h in enumerate(hosts)}
    return sorted(chosen, key=order.__getitem__), unknown


def _one(name: str, hosts: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    if name == "all":
        return list(hosts)
    if name in groups:
        return list(groups[name])
    if name in hosts:
        return [name]
    if not _glob(name):
        return []
    rx = _matcher(name)
    found: list[str] = []
    for group, members in groups.items():
        if rx.fullmatch(group) if not name.startswith("~") else rx.match(group):
            found += [m for m in members if m not in found]
    for host in hosts:
        if (rx.fullmatch(host) if not name.startswith("~") else rx.match(host)) and host not in found:
            found.append(host)
    return found


def tag_selected(tags: Iterable[str], only: Sequence[str], skip: Sequence[str]) -> bool:
    """Whether a step with these tags (its own and its play's) runs under --tags ONLY / --skip-tags SKIP.

    As Ansible: `always` runs unless skipped by name (or `--skip-tags always`); `never` runs only when asked for
    by name (or `never`); `--tags all` (the default) is every step but `never` ones, `tagged` / `untagged` the
    steps with or without tags.
    """
    tags = set(tags)
    if skip and (tags & set(skip) or ("tagged" in skip and tags) or ("untagged" in skip and not tags)):
        return False
    if "always" in tags and "always" not in skip:
        return True
    wanted = set(only) or {"all"}
    if "never" in tags and not (tags & (wanted - {"all", "tagged", "untagged"})):
        return False
    if "all" in wanted:
        return True
    if "tagged" in wanted and tags:
        return True
    if "untagged" in wanted and not tags:
        return True
    return bool(tags & wanted)


def unknown_tags(asked: Iterable[str], known: Iterable[str]) -> list[str]:
    """Tags asked for that no step or play has (the selector and special tags always exist)."""
    have = set(known) | set(SPECIAL_TAGS) | set(SELECTOR_TAGS)
    return [t for t in asked if t not in have]
