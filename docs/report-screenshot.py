#!/usr/bin/env python3
"""Make docs/drift-report.png from real `remediate drift` runs of this tree against two fresh lab stacks.

Needs what the suite needs (lab/setup-host.sh: Docker, sshd, chromium). Brings up two broken lab stacks and an
sshd of its own on loopback, with a third inventory host nothing listens for (unreachable); runs drift on all
three, waits for beat's every-minute task to become never-run and runs drift again, fixes app-1 alone with
`drift --fix --limit app-1`, runs drift once more, renders `remediate report` and screenshots it in headless
Chromium (then pngquant, when installed). Everything is torn down afterwards. Takes about ten minutes.

    .venv/bin/python docs/report-screenshot.py [OUT.png]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lab  # noqa: E402
from tests.conftest import SSHD_ADDRESSES, Sshd, free_port, remediate  # noqa: E402

# beat's database sync lag (3 min) plus the grace (1 min) after the every-minute task was first due
NEVER_RUN_WAIT = 5 * 60


def main(out: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="report-screenshot-"))
    keys = work / "sshd"
    keys.mkdir()
    port = free_port(SSHD_ADDRESSES)
    subprocess.run([str(ROOT / "lab" / "sshd.sh"), "start", str(keys), str(port), *SSHD_ADDRESSES], check=True)
    sshd = Sshd(keys, port, SSHD_ADDRESSES)
    stacks: list[lab.LabStack] = []
    try:
        for _ in range(2):
            stacks.append(lab.up(work))
        inventory = work / "inventory.yml"
        lines = []
        for i, stack in enumerate(stacks, 1):
            one = stack.inventory(work / f"app-{i}.yml", sshd, host=f"app-{i}").read_text().splitlines()
            lines += one if not lines else one[1:]
        # a host nothing listens for: the port was free a moment ago and stays unused
        lines += ["  app-3:", f"    address: {SSHD_ADDRESSES[0]}", f"    port: {free_port(SSHD_ADDRESSES)}",
                  "    user: root", f"    identity_file: {keys / 'id_ed25519'}",
                  f"    known_hosts: {keys / 'known_hosts'}", "    vars:", f"      compose_dir: {work / 'gone'}"]
        inventory.write_text("\n".join(lines) + "\n")
        env = {"REMEDIATE_STATE_DIR": str(work / "state")}
        drift = ("drift", "staging", "-i", str(inventory), "--connect-timeout", "3")
        for step, extra in (("broken", ()), ("wait", ()), ("fix app-1", ("--fix", "--limit", "app-1")), ("after", ())):
            if step == "wait":
                time.sleep(NEVER_RUN_WAIT)
            done = remediate(*drift, *extra, env=env, timeout=1800)
            print(f"drift ({step}): exit {done.returncode}", flush=True)
        page = work / "report.html"
        print(remediate("report", "staging", "--html", str(page), env=env).stdout, end="")
        profile = work / "chromium"
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        "--hide-scrollbars", "--window-size=1100,1240", f"--screenshot={out}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        if shutil.which("pngquant"):  # Debian's pngquant: a third of the size, the text as sharp
            subprocess.run(["pngquant", "--quality=70-90", "--strip", "--force", "--output", str(out), str(out)],
                           check=True)
        print(f"wrote {out} ({out.stat().st_size} bytes); the page: {page}")
        return 0
    finally:
        for stack in stacks:
            lab.down(stack)
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(keys)], check=False)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "docs" / "drift-report.png"))
