// Package integration holds end-to-end tests against the real systems
// freshet's users run: PostgreSQL with logical replication, MariaDB with a
// row-based GTID binlog, and Apache Kafka in KRaft mode. The servers are
// started by env/freshet-env (see ADRs/0002-test-environment.md); `make test`
// starts them, runs every test with their addresses, and stops them.
package integration
