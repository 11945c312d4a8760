"""Drift as JUnit XML: one testsuite per host, one testcase per host x check."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from .drift import CheckStatus, DriftReport


def render(report: DriftReport) -> str:
    """The JUnit document: drift is a <failure>, a check that could not be made an <error>, warnings go to system-out."""
    suites = ET.Element("testsuites", name=f"remediate drift {report.env}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    stamp = report.started_at.strftime("%Y-%m-%dT%H:%M:%S")
    for host in report.hosts:
        checks = [c for c in report.checks if c.host == host]
        counts = {
            "tests": len(checks),
            "failures": sum(c.status == CheckStatus.DRIFT for c in checks),
            "errors": sum(c.status == CheckStatus.ERROR for c in checks),
            "skipped": sum(c.status == CheckStatus.SKIPPED for c in checks),
        }
        attrib = {"name": host, "timestamp": stamp, "time": "0", **{k: str(v) for k, v in counts.items()}}
        suite = ET.SubElement(suites, "testsuite", attrib)
        for key in totals:
            totals[key] += counts[key]
        for c in checks:
            case = ET.SubElement(suite, "testcase", classname=f"{report.env}.{host}", name=c.name, time="0")
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
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")
