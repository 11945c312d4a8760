"""What Celery does, as pure functions of what a host reported: due times, beat's verdicts, task health, runs per
period, task modules.

Inputs are the answers of the probes in facts/celery.py and the source files read from the host; nothing here does I/O.
"""
from .schedules import GRACE, PERIODS, Task, parse_time, parse_tasks, never_fires, cron_never_fires, next_due, last_due, soonest, iso
from .beat import DATABASE_SCHEDULER, OUTCOMES, RowVerdict, BeatProbe, parse_beat_probe, beat_verdicts
from .health import TaskHealth, assess
from .periods import Count, Period, PeriodVerdict, count_runs, edges, proof_row
from .tasks import unregistered, TaskModule, find_unimported_task_modules, defined_tasks

__all__ = ['GRACE', 'PERIODS', 'Task', 'parse_time', 'parse_tasks', 'never_fires', 'cron_never_fires', 'next_due', 'last_due', 'soonest', 'iso', 'DATABASE_SCHEDULER', 'OUTCOMES', 'RowVerdict', 'BeatProbe', 'parse_beat_probe', 'beat_verdicts', 'TaskHealth', 'assess', 'Count', 'Period', 'PeriodVerdict', 'count_runs', 'edges', 'proof_row', 'unregistered', 'TaskModule', 'find_unimported_task_modules', 'defined_tasks']
