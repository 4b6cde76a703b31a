// Package testenv hands the real servers of the test environment to tests.
//
// The launcher integration/env/freshet-env starts PostgreSQL, MariaDB and
// Apache Kafka and exports their addresses as FRESHET_TEST_* variables. A
// test asks for the service it needs; when the variable is missing the test
// is skipped, loudly, unless FRESHET_TEST_REQUIRE_SERVICES names that
// service (as it does under `make test`), in which case the test fails: a
// skipped integration test must never pass for a green run.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
)

// Service names as used by FRESHET_TEST_REQUIRE_SERVICES and --only.
const (
	Postgres = "pg"
	MySQL    = "mysql"
	Kafka    = "kafka"
)

// lookup returns the variable's value or ends the test: Skip when the
// service is optional here, Fatal when the environment promised it.
func lookup(tb testing.TB, service, name string) string {
	tb.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if Required(service) {
		tb.Fatalf("%s is not set but FRESHET_TEST_REQUIRE_SERVICES names %q: the test environment did not provide it", name, service)
	}
	tb.Skipf("skipping: %s not set; run `make test` or `integration/env/freshet-env run -- go test ./...`", name)
	return ""
}

// Required reports whether the environment promised the service.
func Required(service string) bool {
	for _, s := range strings.Split(os.Getenv("FRESHET_TEST_REQUIRE_SERVICES"), ",") {
		if strings.TrimSpace(s) == service {
			return true
		}
	}
	return false
}

// PostgresURL is a superuser connection to the test database.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Postgres, "FRESHET_TEST_PG_URL")
}

// PostgresReplURL is the non-superuser role with REPLICATION that freshet
// itself connects as, authenticated with SCRAM-SHA-256.
func PostgresReplURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Postgres, "FRESHET_TEST_PG_REPL_URL")
}

// PostgresBinDir holds the server's programs (psql, pgbench, ...).
func PostgresBinDir(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Postgres, "FRESHET_TEST_PG_BINDIR")
}

// PostgresCA is the test cluster's self-signed TLS certificate, its own
// root: the sslrootcert of a verify-full connection. The cluster offers
// TLS; the URLs above do not use it (sslmode=disable).
func PostgresCA(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, Postgres, "FRESHET_TEST_PG_CA")
}

// MySQLURL is an administrative connection (all privileges), as
// mysql://user:password@host:port/database.
func MySQLURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, MySQL, "FRESHET_TEST_MYSQL_URL")
}

// MySQLReplURL is the user with REPLICATION SLAVE and REPLICATION CLIENT.
func MySQLReplURL(tb testing.TB) string {
	tb.Helper()
	return lookup(tb, MySQL, "FRESHET_TEST_MYSQL_REPL_URL")
}

// KafkaBrokers are the bootstrap brokers of the test Kafka cluster.
func KafkaBrokers(tb testing.TB) []string {
	tb.Helper()
	return strings.Split(lookup(tb, Kafka, "FRESHET_TEST_KAFKA_BROKERS"), ",")
}

// KafkaSecure is the test Kafka cluster's second listener, which takes
// TLS with SASL (PLAIN and SCRAM-SHA-512) only.
type KafkaSecure struct {
	Brokers        []string
	User, Password string
	// CA is the listener's self-signed certificate, its own root.
	CA string
}

// KafkaSecureListener is the test Kafka cluster's TLS and SASL listener.
func KafkaSecureListener(tb testing.TB) KafkaSecure {
	tb.Helper()
	return KafkaSecure{
		Brokers:  strings.Split(lookup(tb, Kafka, "FRESHET_TEST_KAFKA_SECURE_BROKERS"), ","),
		User:     lookup(tb, Kafka, "FRESHET_TEST_KAFKA_USER"),
		Password: lookup(tb, Kafka, "FRESHET_TEST_KAFKA_PASSWORD"),
		CA:       lookup(tb, Kafka, "FRESHET_TEST_KAFKA_CA"),
	}
}

// MySQLConn is a mysql:// URL taken apart for drivers that want the parts.
type MySQLConn struct {
	Addr     string // host:port
	User     string
	Password string
	Database string
}

// ParseMySQLURL splits mysql://user:password@host:port/database.
func ParseMySQLURL(raw string) (MySQLConn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return MySQLConn{}, fmt.Errorf("parse mysql url: %w", err)
	}
	if u.Scheme != "mysql" || u.Host == "" {
		return MySQLConn{}, fmt.Errorf("parse mysql url: want mysql://user:password@host:port/db, got scheme %q host %q", u.Scheme, u.Host)
	}
	pw, _ := u.User.Password()
	return MySQLConn{Addr: u.Host, User: u.User.Username(), Password: pw, Database: strings.TrimPrefix(u.Path, "/")}, nil
}

// UniqueName returns prefix plus random hex, lower case and valid as a
// PostgreSQL identifier, a slot name or a Kafka topic, so parallel tests
// and repeated runs never share state.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}
