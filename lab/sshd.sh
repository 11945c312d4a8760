#!/usr/bin/env bash
# A throwaway sshd on loopback addresses, with its own keys and known_hosts.
#   lab/sshd.sh start DIR PORT ADDR [ADDR ...]   generate keys in DIR (once), start sshd, wait until it listens
#   lab/sshd.sh stop DIR                         stop exactly the sshd processes started for DIR
# DIR gets: id_ed25519 (client key), known_hosts (one line per ADDR), ssh_host_ed25519_key, sshd.N.pid.
# One sshd takes at most 16 ListenAddress lines, so more addresses start several daemons.
# SSHD_EXTRA_CONFIG (optional): lines appended to each daemon's config, e.g. `SetEnv PATH=...` for a test
# that puts a command wrapper first on the sessions' PATH, or a `Match User ...` block.
set -euo pipefail

die() { echo "sshd.sh: $*" >&2; exit 2; }

stop() {
  local dir=$1 pidfile pid
  for pidfile in "$dir"/sshd.*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

start() {
  local dir=$1 port=$2; shift 2
  [ $# -ge 1 ] || die "usage: sshd.sh start DIR PORT ADDR [ADDR ...]"
  local addr
  for addr in "$@"; do
    case $addr in 127.*|::1) ;; *) die "refusing non-loopback address $addr" ;; esac
  done
  command -v /usr/sbin/sshd >/dev/null || die "/usr/sbin/sshd not found (apt-get install openssh-server)"
  mkdir -p "$dir" /run/sshd
  chmod 700 "$dir"
  dir=$(cd "$dir" && pwd)
  stop "$dir"
  [ -e "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C remediate-lab-host -f "$dir/ssh_host_ed25519_key"
  [ -e "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remediate-lab-client -f "$dir/id_ed25519"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  chmod 600 "$dir/authorized_keys"
  local hostkey
  hostkey=$(cut -d' ' -f1-2 "$dir/ssh_host_ed25519_key.pub")
  : > "$dir/known_hosts"
  for addr in "$@"; do
    if [ "$port" = 22 ]; then echo "$addr $hostkey"; else echo "[$addr]:$port $hostkey"; fi >> "$dir/known_hosts"
  done
  local n=0 i=0 conf
  local addrs=("$@")
  while [ $i -lt ${#addrs[@]} ]; do
    conf="$dir/sshd_config.$n"
    {
      echo "Port $port"
      for addr in "${addrs[@]:$i:16}"; do echo "ListenAddress $addr:$port"; done
      cat <<CONF
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.$n.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200:30:400
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
CONF
      [ -z "${SSHD_EXTRA_CONFIG:-}" ] || printf '%s\n' "$SSHD_EXTRA_CONFIG"
    } > "$conf"
    /usr/sbin/sshd -f "$conf" -E "$dir/sshd.$n.log"
    for _ in $(seq 50); do [ -s "$dir/sshd.$n.pid" ] && break; sleep 0.1; done
    [ -s "$dir/sshd.$n.pid" ] || die "sshd did not start; see $dir/sshd.$n.log"
    n=$((n + 1)); i=$((i + 16))
  done
}

case ${1:-} in
  start) shift; [ $# -ge 3 ] || die "usage: sshd.sh start DIR PORT ADDR [ADDR ...]"; start "$@" ;;
  stop) [ $# -eq 2 ] || die "usage: sshd.sh stop DIR"; stop "$2" ;;
  *) die "usage: sshd.sh start DIR PORT ADDR [ADDR ...] | stop DIR" ;;
esac
