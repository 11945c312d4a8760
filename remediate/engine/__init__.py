"""The engine: one run over many hosts (run.py), and per host (host.py) its plays (play.py), each step's
attempts and judgement (step.py), the one place a change is made (act.py), what it knows of the host
(known.py), owed reloads (pending.py), and rollback: from the trail (rollback.py) or when a verification
fails (recovery.py)."""
