package integration

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
)

// TestKafkaProcessesOverTLSAndSASL: `freshet ingest` and `freshet serve`
// given the brokers' CA and SCRAM-SHA-512 credentials (--kafka-ca,
// --kafka-sasl, --kafka-user, --kafka-password) carry the change stream
// through a listener that takes nothing else: the region catches up with
// the origin and serves its next write.
func TestKafkaProcessesOverTLSAndSASL(t *testing.T) {
	const rows = 8
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pgURL := testenv.PostgresURL(t)
	l := testenv.KafkaSecureListener(t)
	bin := buildFreshet(t)
	super, name, table := processSource(ctx, t, "ks", rows)
	kafka := []string{"--kafka", l.Brokers[0], "--kafka-ca", l.CA, "--kafka-sasl", "scram-sha-512", "--kafka-user", l.User, "--kafka-password", l.Password}
	startChild(t, bin, "ingest", append([]string{"ingest", "--source", pgURL, "--topic", name, "--slot", name + "_slot",
		"--publication", name + "_pub", "--tables", "public." + table, "--heartbeat", "20ms"}, kafka...)...)
	listen, admin := freePort(t), freePort(t)
	startChild(t, bin, "region", append([]string{"serve", "--region", name, "--origin", pgURL, "--listen", listen,
		"--topic", name, "--publication", name + "_pub", "--metrics", admin}, kafka...)...)
	caughtUp := func() { regionCaughtUp(ctx, t, admin, originLSN(ctx, t, super), 90*time.Second) }
	caughtUp()
	checkRegionsServeNextWrite(ctx, t, super, table, rows, caughtUp, []string{listen}, pgURL)
}
