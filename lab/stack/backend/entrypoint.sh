#!/bin/sh
# `serve` (the backend): wait for the database, migrate, seed the PeriodicTask rows, serve on 127.0.0.1.
# Anything else (celery worker / beat) runs as given.
set -eu
if [ "${1:-}" != serve ]; then
  exec "$@"
fi
python - <<'PY'
import os, time
try:  # the version set's PostgreSQL driver: psycopg 3 (current) or psycopg2 (old)
    import psycopg as driver
except ImportError:
    import psycopg2 as driver
deadline = time.monotonic() + 120
while True:
    try:
        driver.connect(host="127.0.0.1", port=os.environ["LAB_DB_PORT"], user="postgres", dbname="edms").close()
        break
    except driver.OperationalError as exc:
        if time.monotonic() > deadline:
            raise SystemExit(f"database on 127.0.0.1:{os.environ['LAB_DB_PORT']} not reachable: {exc}")
        time.sleep(0.5)
PY
python manage.py migrate --noinput -v 0
python manage.py seed_lab
# --noreload: a code change must need a restart, as in production.
exec python manage.py runserver "127.0.0.1:${LAB_BACKEND_PORT}" --noreload
