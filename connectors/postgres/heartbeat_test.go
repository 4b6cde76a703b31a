package postgres_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIdleSlotAdvances leaves a published table untouched for a minute:
// heartbeats written into the WAL must keep the slot's confirmed flush LSN
// moving and progress markers flowing, and slot lag must be measured.
func TestIdleSlotAdvances(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, "idle")
	f.exec(ctx, `CREATE TABLE `+f.table("idle")+` (id int PRIMARY KEY)`)
	logs := &syncBuffer{}
	f.cfg.HeartbeatInterval = 2 * time.Second
	f.cfg.LagWarnBytes = 1
	f.cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	gauge := &lagGauge{}
	f.cfg.LagBytes = gauge
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	reader, run := f.startReader(t, schemas.Position{})

	start := f.confirmedFlush(ctx)
	markers, advances, prev := 0, 0, start
	window := time.Now().Add(time.Minute)
	for time.Now().Before(window) {
		bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := run.sub.Next(bctx)
		bcancel()
		if err == nil {
			if len(b.Changes) != 0 {
				t.Fatalf("idle table produced %d changes", len(b.Changes))
			}
			markers++
		}
		if cf := f.confirmedFlush(ctx); cf > prev {
			advances++
			prev = cf
		}
	}
	t.Logf("over a minute idle: %d heartbeats, %d progress markers, confirmed_flush_lsn %s → %s in %d steps, lag %d bytes",
		reader.Heartbeats(), markers, start, prev, advances, reader.Lag())
	switch {
	case reader.Heartbeats() < 10:
		t.Fatalf("only %d heartbeats in a minute at a 2s interval", reader.Heartbeats())
	case markers < 10:
		t.Fatalf("only %d progress markers in a minute", markers)
	case advances < 10:
		t.Fatalf("confirmed_flush_lsn advanced only %d times in a minute", advances)
	case reader.Lag() < 0 || gauge.sets.Load() == 0:
		t.Fatal("slot lag was never measured")
	case !strings.Contains(logs.String(), "replication slot lag above bound"):
		t.Fatal("no lag warning with a 1-byte bound")
	}
}

type lagGauge struct{ sets atomic.Int64 }

func (g *lagGauge) Set(float64) { g.sets.Add(1) }
