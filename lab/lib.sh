# Shared by lab/up, lab/reset and lab/down (sourced). Parses the common options and knows the instance's files.
#   --dir DIR          the compose project (default /var/lib/remediate-lab/edms, the default instance)
#   --name NAME        compose project name and image name suffix (default: from DIR/.env, else DIR's basename)
#   --variant V        baked (code copied into the image; default) or mounted (code bind-mounted at /app)
#   --versions SET     the dependency set (lab/versions/SET.txt): old (celery 5.4, Django 4.2, psycopg2) or
#                      current (celery 5.7, Django 5.2, psycopg 3; the default)
#   --layout L         edms (docker-compose.yml, edms.settings.base, celery -A edms; the default) or
#                      cookiecutter (compose.yaml, config.settings.production from an env_file, config.celery_app)
#   --port-base N      backend N, PostgreSQL N+1, Redis N+2, all on 127.0.0.1 (default 18000)
#   --sync S           default (Celery's own beat sync, as on real servers; the default) or fast: a named
#                      variant whose settings carry CELERY_BEAT_SYNC_EVERY = 1 (--fast-sync is short for it)
#   --feb31 STATE      enabled (the write-up's table: every row enabled; the default) or disabled: a named
#                      variant with "Send Test Email" (31 February) disabled, a state the write-up lacks
#   --seeds S          broken (the write-ups' two faults; the default) or fixed: a named variant with both
#                      write-ups' fixes already made (the healthy stack lab/break puts faults into); on the old
#                      set it needs --feb31 disabled (celery 5.4's beat dies on that row once it runs the
#                      DatabaseScheduler, so remediate's fix disables it)
# Options not given come from the instance's .env (an existing instance keeps what it was created with).
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_HOME=/var/lib/remediate-lab
DEFAULT_DIR=$LAB_HOME/edms
SSH_DIR=$LAB_HOME/ssh
SSH_ADDR=127.0.0.2
SSH_PORT=2222
DEFAULT_VERSIONS=current
# Base images: remediate-lab-base:SET, built by setup-host.sh (LAB_BASE_REPO: a scratch name for testing it).
BASE_REPO=${LAB_BASE_REPO:-remediate-lab-base}

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,18p' "$LAB/lib.sh" | sed 's/^# \{0,1\}//' >&2; exit 2; }

env_value() { [ -e "$DIR/.env" ] && sed -n "s/^$1=//p" "$DIR/.env"; }

parse_options() {
  DIR=$DEFAULT_DIR NAME="" VARIANT="" VERSION_SET="" LAYOUT="" PORT_BASE="" SYNC="" FEB31="" SEEDS="" PURGE=0
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      --variant) VARIANT=${2:?--variant needs a value}; shift 2 ;;
      --versions) VERSION_SET=${2:?--versions needs a value}; shift 2 ;;
      --layout) LAYOUT=${2:?--layout needs a value}; shift 2 ;;
      --port-base) PORT_BASE=${2:?--port-base needs a value}; shift 2 ;;
      --sync) SYNC=${2:?--sync needs a value}; shift 2 ;;
      --fast-sync) SYNC=fast; shift ;;
      --feb31) FEB31=${2:?--feb31 needs a value}; shift 2 ;;
      --seeds) SEEDS=${2:?--seeds needs a value}; shift 2 ;;
      --purge) PURGE=1; shift ;;
      -h|--help) usage ;;
      *) log "unknown option $1"; usage ;;
    esac
  done
  mkdir -p "$(dirname "$DIR")"
  DIR=$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")
  [ -n "$NAME" ] || NAME=$(env_value COMPOSE_PROJECT_NAME || true)
  [ -n "$VARIANT" ] || VARIANT=$(env_value LAB_VARIANT || true)
  [ -n "$VERSION_SET" ] || VERSION_SET=$(env_value LAB_VERSIONS || true)
  [ -n "$LAYOUT" ] || LAYOUT=$(env_value LAB_LAYOUT || true)
  [ -n "$PORT_BASE" ] || PORT_BASE=$(env_value LAB_BACKEND_PORT || true)
  [ -n "$SYNC" ] || SYNC=$(env_value LAB_SYNC || true)
  [ -n "$FEB31" ] || FEB31=$(env_value LAB_FEB31 || true)
  [ -n "$SEEDS" ] || SEEDS=$(env_value LAB_SEEDS || true)
  [ -n "$NAME" ] || NAME=$(basename "$DIR" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9_-')
  : "${VARIANT:=baked}" "${VERSION_SET:=$DEFAULT_VERSIONS}" "${LAYOUT:=edms}" "${PORT_BASE:=18000}"
  : "${SYNC:=default}" "${FEB31:=enabled}" "${SEEDS:=broken}"
  case $VARIANT in baked|mounted) ;; *) die "--variant must be baked or mounted, not $VARIANT" ;; esac
  [ -e "$LAB/versions/$VERSION_SET.txt" ] \
    || die "--versions must be one of $(cd "$LAB/versions" && ls *.txt | sed 's/\.txt$//' | tr '\n' ' ')not $VERSION_SET"
  case $LAYOUT in edms|cookiecutter) ;; *) die "--layout must be edms or cookiecutter, not $LAYOUT" ;; esac
  case $SYNC in default|fast) ;; *) die "--sync must be default or fast, not $SYNC" ;; esac
  case $FEB31 in enabled|disabled) ;; *) die "--feb31 must be enabled or disabled, not $FEB31" ;; esac
  case $SEEDS in broken|fixed) ;; *) die "--seeds must be broken or fixed, not $SEEDS" ;; esac
  if [ "$SEEDS" = fixed ] && [ "$VERSION_SET" = old ] && [ "$FEB31" = enabled ]; then
    die "--seeds fixed on the old set needs --feb31 disabled: celery 5.4.0's beat dies on the enabled 31-February row once it runs the DatabaseScheduler"
  fi
  case $PORT_BASE in ''|*[!0-9]*) die "--port-base must be a number, not $PORT_BASE" ;; esac
  [[ $NAME =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "--name must be lower-case letters, digits, - and _, not $NAME"
  case $LAYOUT in
    edms) SETTINGS_FILE=backend/edms/settings/base.py CELERY_APP=edms COMPOSE_YAML=docker-compose.yml
          BASE_SETTINGS_FILE=backend/edms/settings/base.py ;;
    cookiecutter) SETTINGS_FILE=backend/config/settings/production.py CELERY_APP=config.celery_app
                  COMPOSE_YAML=compose.yaml BASE_SETTINGS_FILE=backend/config/settings/base.py ;;
  esac
}

is_default() { [ "$DIR" = "$DEFAULT_DIR" ]; }

# The instance's own files: what lab/reset removes and copy_stack puts back (.env is written apart).
has_stack() { [ -e "$DIR/docker-compose.yml" ] || [ -e "$DIR/compose.yaml" ]; }
remove_stack() {
  rm -rf "$DIR/backend" "$DIR/db" "$DIR/.envs" "$DIR"/docker-compose*.yml "$DIR"/compose*.yaml
}

write_env() {
  # The edms layout names its files in COMPOSE_FILE (absolute paths: compose resolves them against its
  # working directory, not --project-directory); the cookiecutter layout names none: compose finds
  # compose.yaml (and compose.override.yaml) in the project directory by itself.
  local files=""
  if [ "$LAYOUT" = edms ]; then
    files="COMPOSE_FILE=$DIR/docker-compose.yml"
    [ "$VARIANT" = mounted ] && files=$files:$DIR/docker-compose.mounted.yml
  fi
  {
    echo "# Written by lab/up: this instance's name, variants and loopback ports."
    echo "COMPOSE_PROJECT_NAME=$NAME"
    [ -z "$files" ] || echo "$files"
    cat <<ENV
LAB_LAYOUT=$LAYOUT
LAB_VARIANT=$VARIANT
LAB_VERSIONS=$VERSION_SET
LAB_SYNC=$SYNC
LAB_FEB31=$FEB31
LAB_SEEDS=$SEEDS
LAB_IMAGE=remediate-lab-$NAME
LAB_BASE_IMAGE=$BASE_REPO:$VERSION_SET
LAB_BACKEND_PORT=$PORT_BASE
LAB_DB_PORT=$((PORT_BASE + 1))
LAB_REDIS_PORT=$((PORT_BASE + 2))
ENV
  } > "$DIR/.env"
}

copy_stack() {
  mkdir -p "$DIR"
  cp -a "$LAB/stack/." "$DIR/"
  if [ "$LAYOUT" = cookiecutter ]; then
    # Same apps, database and image recipe; the project's own files are the cookiecutter layout's.
    rm -rf "$DIR/backend/edms" "$DIR/backend/manage.py" "$DIR"/docker-compose*.yml
    cp -a "$LAB/layouts/cookiecutter/." "$DIR/"
    rm "$DIR/compose.mounted.yaml"
    [ "$VARIANT" = baked ] || cp "$LAB/layouts/cookiecutter/compose.mounted.yaml" "$DIR/compose.override.yaml"
  fi
  # The backend states the set its image runs (the base image's venv holds exactly these).
  cp "$LAB/versions/$VERSION_SET.txt" "$DIR/backend/requirements.txt"
  if [ "$SYNC" = fast ]; then
    # The fast-sync variant: a deviation from the write-up's server, stated in the settings beat loads.
    cat >> "$DIR/$SETTINGS_FILE" <<'PY'

# Lab variant "fast sync" (lab/up --fast-sync), not the write-up's server: beat saves last_run_at after every
# task it sends instead of every 3 minutes (django-celery-beat's default), so a verification waits less.
CELERY_BEAT_SYNC_EVERY = 1
PY
  fi
  [ "$SEEDS" = broken ] || seed_fixes
}

# Both write-ups' fixes, made in the code as they made them (the --seeds fixed variant, and lab/break on an
# instance that still has the write-ups' faults): CELERY_BEAT_SCHEDULER in the settings beat loads,
# `import apps.audit.integrity_tasks` in AuditConfig.ready(). Idempotent.
seed_fixes() {
  python3 "$LAB/edit.py" seed-fixes "$DIR/$SETTINGS_FILE" "$DIR/backend/apps/audit/apps.py"
}

compose() { docker compose --project-directory "$DIR" "$@"; }

bring_up() {
  log "starting $NAME ($LAYOUT layout, $VARIANT, versions $VERSION_SET, sync $SYNC, feb31 $FEB31, seeds $SEEDS) in $DIR: backend 127.0.0.1:$PORT_BASE"
  compose up -d --build --wait --wait-timeout 300 || {
    compose ps -a >&2 || true
    compose logs --tail 30 >&2 || true
    die "the stack in $DIR did not come up"
  }
  # Running is not enough: the worker must answer on the broker, and beat must have started its loop.
  local _ ok=0
  for _ in $(seq 60); do
    if compose exec -T celery_worker celery -A "$CELERY_APP" inspect ping --timeout 2 >/dev/null 2>&1 \
      && compose logs celery_beat 2>/dev/null | grep -q 'beat: Starting'; then
      ok=1; break
    fi
    compose ps -a --format '{{.Service}} {{.State}}' | grep -Eq '^celery_(worker|beat) (exited|dead)' && break
    sleep 1
  done
  if [ $ok = 0 ]; then
    compose ps -a >&2 || true
    compose logs --tail 30 celery_worker celery_beat >&2 || true
    die "celery_worker or celery_beat did not come up in $DIR"
  fi
  log "$NAME is up: $(compose ps --format '{{.Service}}={{.State}}' | tr '\n' ' ')"
}

start_sshd() {
  is_default || return 0
  "$LAB/sshd.sh" start "$SSH_DIR" "$SSH_PORT" "$SSH_ADDR"
  log "sshd for inventory/lab.yml on $SSH_ADDR:$SSH_PORT (keys in $SSH_DIR)"
}
