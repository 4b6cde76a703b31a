# PostgreSQL 15: a private cluster with logical WAL on a loopback port.
# shellcheck shell=bash

pg_bindir() { echo "${FRESHET_PG_BINDIR:-/usr/lib/postgresql/15/bin}"; }

pg_user() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }

postgres_start() {
	local dir=$1 t0 bin port user super_pw repl_pw data
	t0=$(now_ms)
	bin=$(pg_bindir)
	need_packages "$bin/postgres" postgresql-15 "$bin/pgbench" postgresql-contrib psql postgresql-client-15 /usr/bin/openssl openssl
	user=$(pg_user)
	port=$(free_port)
	super_pw=$(random_secret)
	repl_pw=$(random_secret)
	data="$dir/pg/data"
	mkdir -p "$dir/pg"
	[ "$(id -u)" -eq 0 ] && chown "$user:" "$dir/pg"
	printf '%s\n' "$super_pw" >"$dir/pg/pwfile"
	[ "$(id -u)" -eq 0 ] && chown "$user:" "$dir/pg/pwfile"

	as_user "$user" "$bin/initdb" -D "$data" -U freshet_super --pwfile="$dir/pg/pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
		>"$dir/pg/initdb.log" 2>&1 || { cat "$dir/pg/initdb.log" >&2; die "initdb failed"; }
	rm -f "$dir/pg/pwfile"
	# TLS on, for the tests of freshet's origin connections with sslmode
	# require and verify-full: a self-signed certificate for 127.0.0.1,
	# which is its own root (FRESHET_TEST_PG_CA). The tests' URLs say
	# sslmode=disable, so nothing else (benchmarks included) uses it.
	as_user "$user" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
		-subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$dir/pg/server.key" -out "$dir/pg/server.crt" >"$dir/pg/openssl.log" 2>&1 ||
		{ cat "$dir/pg/openssl.log" >&2; die "openssl could not make the server certificate"; }
	chmod 600 "$dir/pg/server.key"

	cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/pg'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
# 1,000 idle clients through the wire front end, each holding a backend in
# session mode, plus the other tests (serve/pgwire idle test).
max_connections = 1300
password_encryption = 'scram-sha-256'
# Small enough that a modest transaction arrives streamed (protocol v2).
logical_decoding_work_mem = '64kB'
ssl = on
ssl_cert_file = '$dir/pg/server.crt'
ssl_key_file = '$dir/pg/server.key'
# A throwaway cluster: durability is not what the tests measure. (Keep
# synchronous_commit on: logical decoding only sends WAL once flushed.)
fsync = off
full_page_writes = off
log_min_messages = warning
EOF
	cat >"$data/pg_hba.conf" <<EOF
local all all trust
local replication all trust
# Roles the wire front end's tests create to relay each origin auth method.
host all freshet_auth_md5 127.0.0.1/32 md5
host all freshet_auth_trust 127.0.0.1/32 trust
host all freshet_auth_password 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
EOF

	start_bg "$user" "$dir/pg/postgres.log" "$bin/postgres" -D "$data"
	local pid=$!
	echo "$pid" >"$dir/postgres.pid"

	WAIT_PID=$pid wait_until "$bin/psql" -h "$dir/pg" -p "$port" -U freshet_super -d postgres -Atc 'select 1' ||
		{ tail -n 20 "$dir/pg/postgres.log" >&2; die "PostgreSQL did not become ready"; }

	"$bin/psql" -q -v ON_ERROR_STOP=1 -h "$dir/pg" -p "$port" -U freshet_super -d postgres <<EOF ||
CREATE DATABASE freshet_test;
CREATE ROLE freshet_repl LOGIN REPLICATION PASSWORD '$repl_pw';
GRANT ALL ON DATABASE freshet_test TO freshet_repl;
\c freshet_test
GRANT ALL ON SCHEMA public TO freshet_repl;
EOF
		die "PostgreSQL role setup failed"

	{
		echo "export FRESHET_TEST_PG_URL='postgres://freshet_super:$super_pw@127.0.0.1:$port/freshet_test?sslmode=disable'"
		echo "export FRESHET_TEST_PG_REPL_URL='postgres://freshet_repl:$repl_pw@127.0.0.1:$port/freshet_test?sslmode=disable'"
		echo "export FRESHET_TEST_PG_BINDIR='$bin'"
		echo "export FRESHET_TEST_PG_SOCKET_DIR='$dir/pg'"
		echo "export FRESHET_TEST_PG_PORT='$port'"
		echo "export FRESHET_TEST_PG_CA='$dir/pg/server.crt'"
	} >"$dir/postgres.env"
	log "PostgreSQL 15 ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
}
