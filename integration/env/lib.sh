# Shared helpers for the test-environment launcher. Sourced, never executed.
# shellcheck shell=bash

log() { printf '[freshet-env %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# now_ms prints wall-clock milliseconds, for start-time reports.
now_ms() { date +%s%3N; }

# need_packages installs the Debian packages whose marker command is
# missing: as root with apt-get, otherwise it prints the command and fails.
# Arguments alternate: command package command package ...
need_packages() {
	local missing=() cmd pkg
	while [ $# -gt 0 ]; do
		cmd=$1 pkg=$2
		shift 2
		command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing packages; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
	fi
	log "installing ${missing[*]} with apt-get"
	# The lock wait matters when several launchers start at once.
	local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
	DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >/dev/null ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# free_port prints a loopback TCP port nobody uses. It draws below the
# kernel's ephemeral range, because a port there can be held at any moment
# by an outgoing connection (or its TIME_WAIT) and then fail to bind; and
# it skips any port with a socket on it (ss) or that accepts a connection.
free_port() {
	local port i lo=10000 hi
	hi=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32767)
	[ "$hi" -gt $((lo + 1000)) ] || { lo=20000; hi=32767; }
	for i in $(seq 1 200); do
		port=$((lo + RANDOM % (hi - lo)))
		if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htan "sport = :$port" 2>/dev/null)" ]; then
			continue
		fi
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	die "no free loopback port found"
}

# random_secret prints a password fit for URLs.
random_secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# wait_until runs "$@" until it succeeds, at most $WAIT_SECONDS (default 60)
# seconds, failing early if the process whose pid is in $WAIT_PID is gone.
wait_until() {
	local deadline=$(($(date +%s) + ${WAIT_SECONDS:-60}))
	until "$@" >/dev/null 2>&1; do
		if [ -n "${WAIT_PID:-}" ] && ! kill -0 "$WAIT_PID" 2>/dev/null; then
			return 1
		fi
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.2
	done
}

# owned_pid succeeds when pid $1 is alive and its command line names the
# environment directory $2, so a recycled pid is never signalled.
owned_pid() {
	[ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# stop_pid sends signal $2 to pid $1 (if it is ours, see owned_pid) and
# waits up to $3 seconds before SIGKILL.
stop_pid() {
	local pid=$1 sig=$2 grace=$3 dir=$4 i
	owned_pid "$pid" "$dir" || return 0
	kill "-$sig" "$pid" 2>/dev/null || return 0
	for i in $(seq 1 $((grace * 10))); do
		owned_pid "$pid" "$dir" || return 0
		sleep 0.1
	done
	log "pid $pid did not stop after SIG$sig in ${grace}s; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	for i in $(seq 1 50); do
		owned_pid "$pid" "$dir" || return 0
		sleep 0.1
	done
}

# teardown stops every server recorded under environment directory $1 and
# removes the directory. Safe to call twice, and from two processes at once.
teardown() {
	local dir=$1 f pid sig
	[ -d "$dir" ] || return 0
	mkdir "$dir/.teardown" 2>/dev/null || return 0
	for f in "$dir"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		# SIGINT is PostgreSQL's "fast" shutdown; the others take SIGTERM.
		case "$(basename "$f")" in
		postgres.pid) sig=INT ;;
		*) sig=TERM ;;
		esac
		stop_pid "$pid" "$sig" 20 "$dir"
	done
	rm -rf "$dir"
	log "stopped and removed $dir"
}

# as_user runs a command as the unprivileged owner of a server's files
# (PostgreSQL refuses to run as root). setpriv execs, so pids stay exact.
as_user() {
	local user=$1
	shift
	if [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then
		setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
	else
		"$@"
	fi
}

# start_bg starts a server in the background in a session of its own, so a
# terminal's Ctrl-C reaches only the launcher, which stops servers in order.
# The caller reads the server's pid from $!.
start_bg() {
	local user=$1 logf=$2
	shift 2
	setsid bash -c 'user=$1; shift; if [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; fi; exec "$@"' \
		_ "$user" "$@" >>"$logf" 2>&1 </dev/null &
}
