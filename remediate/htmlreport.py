"""`remediate report ENV --html FILE`: one self-contained page (inline CSS, no scripts, no network assets)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from .drift import Check, CheckStatus, DriftReport
from .history import StoredRun

SYMBOL = {CheckStatus.OK: "✓", CheckStatus.DRIFT: "✗", CheckStatus.ERROR: "!", CheckStatus.SKIPPED: "–"}
VERDICT = {0: "clean", 1: "error", 2: "drift"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2329;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#57606a;margin-bottom:12px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff}
.b-clean,.s-ok{background:#1a7f37}.b-drift,.s-drift{background:#cf222e}.b-error,.s-error{background:#9a6700}
.s-skipped,.s-none{background:#d0d7de;color:#57606a}
table{border-collapse:collapse;margin:4px 0 10px}
th,td{border:1px solid #d8dee4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
table.timeline td.cell{width:22px;min-width:22px;padding:0;text-align:center;color:#fff;font-weight:700}
table.timeline th.run{font-weight:400;font-size:11px;color:#57606a;writing-mode:vertical-rl;transform:rotate(180deg);
  white-space:nowrap;padding:4px 2px}
table.timeline td.now{font-weight:600}
td.check{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:nowrap}
pre{background:#f6f8fa;border:1px solid #d8dee4;padding:8px;overflow:auto;font-size:12px;margin:4px 0 12px}
.del{color:#cf222e}.add{color:#1a7f37}.hunk{color:#8250df}
ul{margin:4px 0 10px;padding-left:22px}
.legend span.cell{display:inline-block;width:18px;text-align:center;color:#fff;font-weight:700;margin:0 4px 0 12px}
"""


def render(env: str, runs: Sequence[StoredRun], generated: datetime | None = None) -> str:
    """The page: verdict, hosts x checks timeline, overdue tasks with due times, warnings, the latest diffs."""
    generated = generated or datetime.now(timezone.utc)
    head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>remediate drift: {escape(env)}</title><style>{CSS}</style></head><body>")
    body = [f"<h1>Drift report: {escape(env)}</h1>"]
    if not runs:
        body.append(f"<p class=\"meta\">Generated {_when(generated)}. No drift runs are recorded for "
                    f"{escape(env)} yet: run <code>remediate drift {escape(env)}</code>.</p>")
        return head + "".join(body) + "</body></html>\n"
    latest = runs[-1].report
    verdict = VERDICT[int(latest.exit_code())]
    body.append(
        f"<p class=\"meta\">Latest run <b>{escape(latest.run_id)}</b> at {_when(latest.started_at)}: "
        f"<span class=\"badge b-{verdict}\" id=\"verdict\">{verdict}</span> &nbsp; {len(latest.hosts)} host(s), "
        f"{len(latest.drifted())} drifted check(s), {len(latest.warnings())} warning(s). "
        f"{len(runs)} run(s) shown, {_when(runs[0].report.started_at)} to {_when(latest.started_at)}. "
        f"Generated {_when(generated)}.</p>"
    )
    body.append(_timeline(runs))
    body.append(_tasks(latest))
    body.append(_warnings(latest))
    body.append(_diffs(latest))
    return head + "".join(body) + "</body></html>\n"


def _when(dt: datetime) -> str:
    return escape(dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))


def _timeline(runs: Sequence[StoredRun]) -> str:
    out = ["<h2>Hosts × checks over time</h2>",
           "<p class=\"legend\">Each column is one run, oldest on the left; the last column is the latest state."
           "<span class=\"cell s-ok\">✓</span>ok<span class=\"cell s-drift\">✗</span>drift"
           "<span class=\"cell s-error\">!</span>could not check<span class=\"cell s-none\">·</span>not checked</p>"]
    hosts = list(dict.fromkeys(h for r in runs for h in r.report.hosts))
    latest = runs[-1].report
    for host in hosts:
        names = list(dict.fromkeys(c.name for r in runs for c in r.report.checks if c.host == host))
        out.append(f"<h3>{escape(host)}</h3><table class=\"timeline\"><tr><th>check</th>")
        for r in runs:
            label = r.report.started_at.astimezone(timezone.utc).strftime("%m-%d %H:%M")
            label += " fix" if r.report.phase == "after-fix" else ""
            out.append(f"<th class=\"run\" title=\"{escape(r.report.run_id)}\">{escape(label)}</th>")
        out.append("<th>latest</th></tr>")
        for name in names:
            out.append(f"<tr><td class=\"check\">{escape(name)}</td>")
            for r in runs:
                check = next((c for c in r.report.checks if c.host == host and c.name == name), None)
                out.append(_cell(check, r.report))
            now = next((c for c in latest.checks if c.host == host and c.name == name), None)
            word = now.status.value if now else "not checked"
            out.append(f"<td class=\"now\">{escape(word)}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _cell(check: Check | None, report: DriftReport) -> str:
    when = report.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    if check is None:
        return f"<td class=\"cell s-none\" title=\"{escape(when)}: not checked\">·</td>"
    title = f"{when}: {check.status.value}" + "".join(f"\n{d}" for d in check.details[:5])
    return (f"<td class=\"cell s-{check.status.value}\" title=\"{escape(title)}\">"
            f"{SYMBOL[check.status]}</td>")


def _tasks(report: DriftReport) -> str:
    out = ["<h2>Periodic tasks not running on time</h2>"]
    late = [t for t in report.tasks if t.status in ("never_run", "overdue")]
    if late:
        out.append("<table id=\"tasks\"><tr><th>host</th><th>task</th><th>status</th><th>was due</th><th>last run</th>"
                   "<th>next due</th><th>schedule</th></tr>")
        for t in late:
            out.append(f"<tr><td>{escape(t.host)}</td><td>{escape(t.name)}<br><small>{escape(t.task)}</small></td>"
                       f"<td>{escape(t.status.replace('_', ' '))}</td><td>{escape(t.last_due or '-')}</td>"
                       f"<td>{escape(t.last_run_at or 'never')}</td><td>{escape(t.next_due or '-')}</td>"
                       f"<td>{escape(t.schedule)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>Every enabled periodic task that was due since beat started ran within its window.</p>")
    pending = [t for t in report.tasks if t.status == "pending"]
    if pending:
        # not drift: beat (re)started after these were last due, so their next due time is the first test
        items = "".join(f"<li><b>{escape(t.host)}/{escape(t.name)}</b>: next due {escape(t.next_due or '-')} "
                        f"(last due {escape(t.last_due or '-')}, before beat started)</li>" for t in pending)
        out.append(f"<h3>Pending (not drift): last due before beat started</h3><ul id=\"pending\">{items}</ul>")
    return "".join(out)


def _warnings(report: DriftReport) -> str:
    warnings = report.warnings()
    if not warnings:
        return ""
    items = "".join(f"<li><b>{escape(key)}</b>: {escape(text)}</li>" for key, text in warnings)
    return f"<h2>Warnings (not drift)</h2><ul id=\"warnings\">{items}</ul>"


def _diffs(report: DriftReport) -> str:
    out = ["<h2>Latest drift details and diffs</h2>"]
    checks = [c for c in report.checks if c.status in (CheckStatus.DRIFT, CheckStatus.ERROR)]
    if not checks:
        return out[0] + "<p>Nothing drifted in the latest run.</p>"
    for c in checks:
        out.append(f"<h3>{escape(c.key)}: {escape(c.status.value)}</h3><ul>")
        out += [f"<li>{escape(d)}</li>" for d in c.details]
        out.append("</ul>")
        if c.diff:
            out.append("<pre>" + "\n".join(_diff_line(line) for line in c.diff.rstrip("\n").splitlines()) + "</pre>")
    return "".join(out)


def _diff_line(line: str) -> str:
    if line.startswith(("+++", "---")):
        return f"<b>{escape(line)}</b>"
    css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1])
    return f"<span class=\"{css}\">{escape(line)}</span>" if css else escape(line)
