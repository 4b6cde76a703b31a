package main

import (
	"bytes"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/front"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command prints usage", args: nil, wantCode: 2, wantStderr: "usage: freshet"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "freshet dev"},
		{name: "help goes to stdout", args: []string{"--help"}, wantCode: 0, wantStdout: "usage: freshet"},
		{name: "up needs an origin", args: []string{"up"}, wantCode: 2, wantStderr: "--origin (or FRESHET_ORIGIN) is required"},
		{name: "ingest needs a source", args: []string{"ingest", "--kafka", "k:9092"}, wantCode: 2, wantStderr: "--source (or FRESHET_SOURCE) is required"},
		{name: "ingest needs brokers", args: []string{"ingest", "--source", "postgres://h/db"}, wantCode: 2, wantStderr: "--kafka (or FRESHET_KAFKA) is required"},
		{name: "serve needs a region", args: []string{"serve", "--kafka", "k:9092", "--origin", "postgres://h/db"}, wantCode: 2, wantStderr: "--region (or FRESHET_REGION) is required"},
		{name: "serve needs an origin", args: []string{"serve", "--region", "eu", "--kafka", "k:9092"}, wantCode: 2, wantStderr: "--origin (or FRESHET_ORIGIN) is required"},
		{name: "serve: --debezium-assume-lag needs Debezium topics", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--debezium-assume-lag", "2s"},
			wantCode: 2, wantStderr: "--debezium-assume-lag needs --debezium-topics"},
		{name: "serve: --topic and --debezium-topics exclude each other", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--topic", "t", "--debezium-topics", "pg.public.a"},
			wantCode: 2, wantStderr: "--topic and --debezium-topics exclude each other"},
		{name: "serve: a negative assumed lag is refused", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--debezium-topics", "pg.public.a", "--debezium-assume-lag", "-1s"},
			wantCode: 2, wantStderr: "--debezium-assume-lag must not be negative"},
		{name: "serve: a Debezium topic must name its table", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--debezium-topics", "orders"},
			wantCode: 2, wantStderr: `Debezium topic "orders" is not named prefix.schema.table`},
		{name: "up: --require-tls needs a certificate", args: []string{"up", "--origin", "postgres://h/db", "--require-tls"},
			wantCode: 2, wantStderr: "requiring TLS needs a certificate and key"},
		{name: "up: --pool-mode transaction needs --auth-url", args: []string{"up", "--origin", "postgres://h/db", "--pool-mode", "transaction"},
			wantCode: 2, wantStderr: "transaction pooling needs an auth user (--auth-url)"},
		{name: "up: an unknown pool mode is refused", args: []string{"up", "--origin", "postgres://h/db", "--pool-mode", "statement"},
			wantCode: 2, wantStderr: `--pool-mode is session or transaction, not "statement"`},
		{name: "serve: --tls-cert needs --tls-key", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--tls-cert", "c.pem"},
			wantCode: 2, wantStderr: "a TLS certificate needs its key"},
		{name: "serve: a negative statement timeout is refused", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--statement-timeout", "-1s"},
			wantCode: 2, wantStderr: "must not be negative"},
		{name: "ingest: SASL PLAIN without TLS is refused", args: []string{"ingest", "--source", "postgres://h/db", "--kafka", "k:9092", "--kafka-sasl", "plain", "--kafka-user", "u", "--kafka-password", "p"},
			wantCode: 2, wantStderr: "SASL PLAIN sends the password in the clear"},
		{name: "serve: SASL needs a password", args: []string{"serve", "--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db", "--kafka-sasl", "scram-sha-512", "--kafka-user", "u"},
			wantCode: 2, wantStderr: "needs a user and a password"},
		{name: "help lists ingest and serve", args: []string{"help"}, wantCode: 0, wantStdout: "serve      a regional node"},
		{name: "unknown command is an error", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestServeFlagsDebezium: --debezium-topics replaces the default topic and
// carries the assumed lag through to the region's configuration.
func TestServeFlagsDebezium(t *testing.T) {
	var stderr bytes.Buffer
	cfg, _, err := serveFlags([]string{"--region", "eu", "--kafka", "k:9092", "--origin", "postgres://h/db",
		"--debezium-topics", "pg.public.a, pg.public.b", "--debezium-assume-lag", "3s", "--debezium-from-beginning"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Topic != "" || len(cfg.DebeziumTopics) != 2 || cfg.DebeziumTopics[1] != "pg.public.b" {
		t.Errorf("topic %q, Debezium topics %q; want no topic and [pg.public.a pg.public.b]", cfg.Topic, cfg.DebeziumTopics)
	}
	if cfg.DebeziumAssumeLag != 3*time.Second || !cfg.DebeziumFromBeginning {
		t.Errorf("assumed lag %s, from beginning %v; want 3s, true", cfg.DebeziumAssumeLag, cfg.DebeziumFromBeginning)
	}
}

// TestClientFlags: the endpoint's flags and their FRESHET_* variables reach
// the node's Clients, for up and serve alike; a flag beats its variable.
func TestClientFlags(t *testing.T) {
	t.Setenv("FRESHET_STATEMENT_TIMEOUT", "3s")
	t.Setenv("FRESHET_MAX_CLIENT_CONNS", "7")
	t.Setenv("FRESHET_POOL_MODE", "transaction")
	t.Setenv("FRESHET_POOL_SIZE", "20")
	t.Setenv("FRESHET_PEERS", "1=10.0.0.1:5432, 2=[::1]:5433")
	want := front.Clients{TLSCert: "c.pem", TLSKey: "k.pem", RequireTLS: true, MaxConns: 50, MaxMessageBytes: 1 << 20,
		IdleTimeout: time.Minute, StatementTimeout: 3 * time.Second, AuthURL: "postgres://auth@h/db", TransactionPooling: true,
		PoolSize: 20, PoolWaitTimeout: 30 * time.Second, PoolMaxLifetime: time.Hour, ShutdownTimeout: 10 * time.Second,
		PeerID: 2, Peers: map[int]string{1: "10.0.0.1:5432", 2: "[::1]:5433"}}
	flags := []string{"--origin", "postgres://h/db", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--require-tls",
		"--max-client-conns", "50", "--max-message-bytes", "1048576", "--idle-timeout", "1m", "--auth-url", "postgres://auth@h/db",
		"--pool-wait-timeout", "30s", "--peer-id", "2"}
	var stderr bytes.Buffer
	up, _, err := upFlags(flags, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	serve, _, err := serveFlags(append([]string{"--region", "eu", "--kafka", "k:9092"}, flags...), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]front.Clients{"up": up.Clients, "serve": serve.Clients} {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: clients %+v, want %+v", name, got, want)
		}
	}
	up, _, err = upFlags(append(flags, "--shutdown-timeout", "1m30s"), &stderr)
	if err != nil || up.Clients.ShutdownTimeout != 90*time.Second {
		t.Errorf("--shutdown-timeout 1m30s: %v, err %v", up.Clients.ShutdownTimeout, err)
	}
	if _, _, err := upFlags([]string{"--origin", "postgres://h/db", "--pool-size", "5", "--pool-mode", "session"}, &stderr); err == nil {
		t.Error("--pool-size without --auth-url was accepted")
	}
	for _, bad := range [][]string{
		{"--peers", "1=h:1"},                         // no --peer-id
		{"--peer-id", "256"},                         // out of range
		{"--peer-id", "1", "--peers", "1=h"},         // no port
		{"--peer-id", "1", "--peers", "x=h:1"},       // no id
		{"--peer-id", "1", "--peers", "0=h:1"},       // id out of range
		{"--peer-id", "1", "--peers", "2=h:1,2=h:2"}, // twice
	} {
		t.Setenv("FRESHET_PEERS", "")
		if _, _, err := upFlags(append([]string{"--origin", "postgres://h/db"}, bad...), &stderr); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestKafkaSecurityFlags: the brokers' TLS and SASL flags reach the ingest
// and the region alike.
func TestKafkaSecurityFlags(t *testing.T) {
	t.Setenv("FRESHET_KAFKA_PASSWORD", "secret")
	flags := []string{"--kafka", "k:9093", "--kafka-tls", "--kafka-sasl", "scram-sha-512", "--kafka-user", "freshet"}
	var stderr bytes.Buffer
	ing, _, err := ingestFlags(append([]string{"--source", "postgres://h/db"}, flags...), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	reg, _, err := serveFlags(append([]string{"--region", "eu", "--origin", "postgres://h/db"}, flags...), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	for name, sec := range map[string]kafka.Security{"ingest": ing.KafkaSecurity, "serve": reg.KafkaSecurity} {
		if sec.TLS == nil || sec.SASL == nil || sec.SASL.Name() != "SCRAM-SHA-512" {
			t.Errorf("%s: TLS %v, SASL %v; want TLS and SCRAM-SHA-512", name, sec.TLS != nil, sec.SASL)
		}
	}
}

// TestVCSSuffix: the version names the commit a binary was built from, and
// whether the checkout had changes.
func TestVCSSuffix(t *testing.T) {
	for _, tt := range []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"no VCS information", nil, ""},
		{"a clean checkout", []debug.BuildSetting{{Key: "vcs.revision", Value: "0dfd2d7aa11bb22cc33dd"}, {Key: "vcs.modified", Value: "false"}}, " (0dfd2d7aa11b)"},
		{"a modified checkout", []debug.BuildSetting{{Key: "vcs.revision", Value: "0dfd2d7"}, {Key: "vcs.modified", Value: "true"}}, " (0dfd2d7, modified)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := vcsSuffix(tt.settings); got != tt.want {
				t.Fatalf("vcsSuffix = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDDLTriggerFlag: `freshet up` and `freshet ingest` follow the DDL
// event trigger unless told not to, by flag or environment.
func TestDDLTriggerFlag(t *testing.T) {
	var stderr bytes.Buffer
	up, _, err := upFlags([]string{"--origin", "postgres://h/db"}, &stderr)
	if err != nil || !up.DDLTrigger {
		t.Fatalf("up by default: DDLTrigger %v, err %v; want true", up.DDLTrigger, err)
	}
	ing, _, err := ingestFlags([]string{"--source", "postgres://h/db", "--kafka", "k:9092", "--ddl-trigger=false"}, &stderr)
	if err != nil || ing.DDLTrigger {
		t.Fatalf("ingest --ddl-trigger=false: DDLTrigger %v, err %v; want false", ing.DDLTrigger, err)
	}
	t.Setenv("FRESHET_DDL_TRIGGER", "false")
	if up, _, err = upFlags([]string{"--origin", "postgres://h/db"}, &stderr); err != nil || up.DDLTrigger {
		t.Fatalf("up with FRESHET_DDL_TRIGGER=false: DDLTrigger %v, err %v; want false", up.DDLTrigger, err)
	}
}
