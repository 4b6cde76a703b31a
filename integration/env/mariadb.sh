# MariaDB (Debian's 10.11): a private datadir with a row-based, GTID binlog.
# shellcheck shell=bash

mariadb_start() {
	local dir=$1 t0 port admin_pw repl_pw user data sock pid
	t0=$(now_ms)
	need_packages mariadbd mariadb-server mariadb mariadb-client
	user=root
	[ "$(id -u)" -eq 0 ] && user=mysql
	port=$(free_port)
	admin_pw=$(random_secret)
	repl_pw=$(random_secret)
	data="$dir/mariadb/data"
	sock="$dir/mariadb/mariadb.sock"
	mkdir -p "$data"
	[ "$(id -u)" -eq 0 ] && chown -R mysql: "$dir/mariadb"

	cat >"$dir/mariadb/my.cnf" <<EOF
[mariadbd]
datadir = $data
socket = $sock
pid-file = $dir/mariadb/mariadbd.pid
port = $port
bind-address = 127.0.0.1
skip-name-resolve
server-id = 1
log-bin = $data/binlog
binlog-format = ROW
binlog-row-image = FULL
binlog-row-metadata = FULL
gtid-strict-mode = ON
log-slave-updates = ON
max-connections = 500
innodb-buffer-pool-size = 128M
innodb-flush-log-at-trx-commit = 2
sync-binlog = 0
log-error = $dir/mariadb/error.log
EOF
	[ "$(id -u)" -eq 0 ] && chown mysql: "$dir/mariadb/my.cnf"

	mariadb-install-db --defaults-file="$dir/mariadb/my.cnf" --user="$user" \
		--auth-root-authentication-method=socket --skip-test-db \
		>"$dir/mariadb/install.log" 2>&1 || { cat "$dir/mariadb/install.log" >&2; die "mariadb-install-db failed"; }

	start_bg root "$dir/mariadb/stdout.log" mariadbd --defaults-file="$dir/mariadb/my.cnf" --user="$user"
	pid=$!
	echo "$pid" >"$dir/mariadb.pid"

	WAIT_PID=$pid wait_until mariadb --no-defaults -S "$sock" -u root -e 'select 1' ||
		{ tail -n 20 "$dir/mariadb/error.log" >&2; die "MariaDB did not become ready"; }

	mariadb --no-defaults -S "$sock" -u root <<EOF || die "MariaDB user setup failed"
CREATE DATABASE freshet_test;
CREATE USER 'freshet_admin'@'127.0.0.1' IDENTIFIED BY '$admin_pw';
GRANT ALL PRIVILEGES ON *.* TO 'freshet_admin'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER 'freshet_repl'@'127.0.0.1' IDENTIFIED BY '$repl_pw';
GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'freshet_repl'@'127.0.0.1';
GRANT ALL PRIVILEGES ON freshet_test.* TO 'freshet_repl'@'127.0.0.1';
EOF

	{
		echo "export FRESHET_TEST_MYSQL_URL='mysql://freshet_admin:$admin_pw@127.0.0.1:$port/freshet_test'"
		echo "export FRESHET_TEST_MYSQL_REPL_URL='mysql://freshet_repl:$repl_pw@127.0.0.1:$port/freshet_test'"
		echo "export FRESHET_TEST_MYSQL_SOCKET='$sock'"
	} >"$dir/mariadb.env"
	log "MariaDB $(mariadbd --version | awk '{print $3}') ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
}
