"""Drift as JUnit XML, valid against the Jenkins xunit plugin's junit-10.xsd and read by GitLab.

One testcase per host x check (classname ENV.HOST, name the check), grouped in testsuites per host and source:
one per playbook check, whose `file` is the playbook (the schema allows `file` on a testsuite, not on a
testcase), and one for the host's health checks. Drift is a <failure>, a check that could not be made an
<error>; warnings go to the testcase's system-out. `time` is the check's duration: a playbook check's steps, a
health check its host's one diagnosis (shared by the host's health checks, so their suite counts it once).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import timezone

from .model import PLAYBOOK_PREFIX, Check, CheckStatus, DriftReport


def _seconds(value: float | None) -> str | None:
    # the schema's SUREFIRE_TIME: digits, at most three decimals, no exponent
    return None if value is None else f"{max(value, 0.0):.3f}"


def _suite(parent: ET.Element, name: str, host: str, stamp: str, checks: Sequence[Check], env: str,
           seconds: float | None, file: str = "") -> None:
    attrib = {
        "name": name,
        "tests": str(len(checks)),
        "failures": str(sum(c.status == CheckStatus.DRIFT for c in checks)),
        "errors": str(sum(c.status == CheckStatus.ERROR for c in checks)),
        "skipped": str(sum(c.status == CheckStatus.SKIPPED for c in checks)),
        "timestamp": stamp,
        "hostname": host,
    }
    if file:
        attrib["file"] = file
    if (time := _seconds(seconds)) is not None:
        attrib["time"] = time
    suite = ET.SubElement(parent, "testsuite", attrib)
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{env}.{host}", name=c.name)
        if (time := _seconds(c.duration)) is not None:
            case.set("time", time)
        text = "\n".join(c.details) + (f"\n\n{c.diff}" if c.diff else "")
        first = c.details[0] if c.details else c.status.value
        if c.status == CheckStatus.DRIFT:
            ET.SubElement(case, "failure", message=first, type="drift").text = text
        elif c.status == CheckStatus.ERROR:
            ET.SubElement(case, "error", message=first, type="error").text = text
        elif c.status == CheckStatus.SKIPPED:
            ET.SubElement(case, "skipped", message=first)
        if c.warnings:
            ET.SubElement(case, "system-out").text = "\n".join(f"warning: {w}" for w in c.warnings)


def render(report: DriftReport) -> str:
    """The JUnit document of one drift assessment."""
    checks = report.checks
    suites = ET.Element("testsuites", {
        "name": f"remediate drift {report.env}",
        "tests": str(len(checks)),
        "failures": str(sum(c.status == CheckStatus.DRIFT for c in checks)),
        "errors": str(sum(c.status == CheckStatus.ERROR for c in checks)),
    })
    if (time := _seconds(report.duration)) is not None:
        suites.set("time", time)
    stamp = report.started_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    for host in report.hosts:
        mine = [c for c in checks if c.host == host]
        for c in (c for c in mine if c.name.startswith(PLAYBOOK_PREFIX)):
            _suite(suites, f"{host}: {c.file or c.name}", host, stamp, [c], report.env, c.duration, c.file)
        health = [c for c in mine if not c.name.startswith(PLAYBOOK_PREFIX)]
        if health:
            shared = [c.duration for c in health if c.duration is not None]
            _suite(suites, f"{host}: health checks", host, stamp, health, report.env, max(shared) if shared else None)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")
