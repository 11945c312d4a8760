"""The benchmark workload for pyinfra (bench/run): the same work as bench/playbooks/workload.yml.

pyinfra has no "insert this line after that one" besides files.block, which wraps the line in markers.
The read-only check is a fact, because facts are the part of pyinfra that runs in --dry mode too.
"""
from shlex import quote

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

project = host.data.project_dir
settings = f"{project}/edms/settings/base.py"
POLL = 'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; [ $n -ge 3 ]'
RESTART = 'echo restarted >> "$0"'

edit = files.block(
    name="scheduler setting after the schedule file",
    path=settings,
    content="CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'",
    line="^CELERY_BEAT_SCHEDULE_FILENAME =",
    after=True,
)
server.shell(
    name="wait until ready",
    commands=[f"sh -c {quote(POLL)} {quote(project + '/poll.count')}"],
    _retries=4,
    _retry_delay=1,
)
host.get_fact(Command, f"grep -c CELERY_BEAT_SCHEDULE_FILENAME {quote(settings)}")
server.shell(
    name="restart",
    commands=[f"sh -c {quote(RESTART)} {quote(project + '/restarts.log')}"],
    _if=edit.did_change,
)
