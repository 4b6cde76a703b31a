package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

// TestReplyRequestedKeepsConnection sets this connection's
// wal_sender_timeout to 2s and the reader's own status interval to an
// hour: only answering the server's reply-requested keepalives at once
// keeps the walsender from dropping the connection.
func TestReplyRequestedKeepsConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "ka")
	f.exec(ctx, `CREATE TABLE `+f.table("ka")+` (id int PRIMARY KEY)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(f.cfg.URL, "?") {
		sep = "&"
	}
	f.cfg.URL += sep + "options=-c%20wal_sender_timeout%3D2s"
	f.cfg.StatusInterval, f.cfg.ReceiveTimeout = time.Hour, time.Hour
	run := f.start(t, schemas.Position{})
	pid := f.walsenderPID(ctx)
	time.Sleep(8 * time.Second) // four wal_sender_timeouts
	if now := f.walsenderPID(ctx); now != pid {
		t.Fatalf("walsender pid %d became %d: the server dropped the silent connection", pid, now)
	}
	f.exec(ctx, `INSERT INTO `+f.table("ka")+` VALUES (1)`)
	run.collect(t, 10*time.Second, hasRow("ka", 1))
}

// walsenderPID waits for the slot to be active and returns its walsender.
func (f *fixture) walsenderPID(ctx context.Context) int {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pid *int
		if err := f.super.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&pid); err != nil {
			f.t.Fatal(err)
		}
		if pid != nil {
			return *pid
		}
		if time.Now().After(deadline) {
			f.t.Fatal("slot never became active")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancelStopsIdleStream cancels a stream that is waiting for the server
// with its next status update an hour away: the receive must end at once,
// not at its deadline.
func TestCancelStopsIdleStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "cs")
	f.exec(ctx, `CREATE TABLE `+f.table("cs")+` (id int PRIMARY KEY)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	f.cfg.StatusInterval, f.cfg.ReceiveTimeout = time.Hour, time.Hour
	run := f.start(t, schemas.Position{})
	f.exec(ctx, `INSERT INTO `+f.table("cs")+` VALUES (1)`)
	run.collect(t, 10*time.Second, hasRow("cs", 1))
	time.Sleep(200 * time.Millisecond) // back in a receive
	began := time.Now()
	run.stop()
	done := make(chan error, 1)
	go func() { done <- run.wait() }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("stream ended with %v, want context.Canceled", err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("stream took %s to stop after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still running 10s after cancel")
	}
}
