package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/ingestnode"
	"github.com/freshetdb/freshet/schemas"
)

// ingestLoad is one shape of origin write load: txs transactions of rows
// rows each, committed by workers connections.
type ingestLoad struct {
	name          string
	txs, rows     int
	workers       int
	backlog       bool // committed while the ingest is stopped, then drained
	txsPerRequest int  // transactions sent in one simple-protocol request
}

func (l ingestLoad) total() int { return l.txs * l.rows }

// ingestResult is what one load measured.
type ingestResult struct {
	load ingestLoad
	// committed is the time the origin took to commit everything (from
	// the first commit); durable the time until the ingest's
	// Kafka-acknowledged position covered the last commit, from the first
	// commit (or, for a backlog, from the ingest's start).
	committed, durable time.Duration
	// cpu is this process's CPU time over the durable interval: the
	// ingest's decode, encode and produce (for a backlog, only that; with
	// concurrent commits, also the committing clients' share).
	cpu time.Duration
}

func (r ingestResult) String() string {
	rate := func(d time.Duration) float64 { return float64(r.load.total()) / d.Seconds() }
	perChange := float64(r.cpu.Microseconds()) / float64(r.load.total())
	if r.load.backlog {
		return fmt.Sprintf("ingest %-38s %d changes: backlog drained into Kafka in %s = %.0f changes/s, %.2f µs CPU/change in the ingest (origin commit took %s before)",
			r.load.name, r.load.total(), r.durable.Round(time.Millisecond), rate(r.durable), perChange, r.committed.Round(time.Millisecond))
	}
	return fmt.Sprintf("ingest %-38s %d changes: first commit -> Kafka-acknowledged in %s = %.0f changes/s, %.2f µs CPU/change in this process (origin commits took %s)",
		r.load.name, r.load.total(), r.durable.Round(time.Millisecond), rate(r.durable), perChange, r.committed.Round(time.Millisecond))
}

// ingestRates measures end-to-end ingest throughput: origin commits,
// decoded from a fresh slot by the ingest wiring (internal/ingestnode, in
// process), published to a fresh topic, until Kafka acknowledged the last
// commit (ingestnode.Node.Durable covers its LSN, which is also when the
// slot may be acknowledged).
func ingestRates(ctx context.Context, super *pgx.Conn, origin string, brokers []string, loads []ingestLoad) ([]ingestResult, error) {
	var out []ingestResult
	for _, l := range loads {
		r, err := ingestRate(ctx, super, origin, brokers, l)
		if err != nil {
			return out, fmt.Errorf("%s: %w", l.name, err)
		}
		fmt.Println(r)
		out = append(out, r)
	}
	return out, nil
}

func ingestRate(ctx context.Context, super *pgx.Conn, origin string, brokers []string, l ingestLoad) (ingestResult, error) {
	res := ingestResult{load: l}
	name := "ki_" + randHex()
	table := name + "_t"
	if _, err := super.Exec(ctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, v int NOT NULL, note text NOT NULL)"); err != nil {
		return res, err
	}
	defer cleanup(super, name, table)
	cfg := ingestnode.Config{Source: origin, Brokers: brokers, Topic: name, Partitions: 0, // the ingest's default
		Slot: name + "_slot", Publication: name + "_pub", Tables: []string{"public." + table}, Heartbeat: 50 * time.Millisecond}
	ing, stop, err := startIngest(ctx, cfg, true)
	if err != nil {
		return res, err
	}
	defer func() { stop() }()
	if l.backlog {
		stop() // the slot exists; the changes wait in the WAL
	}
	t0, cpu0 := time.Now(), cpuTime()
	last, err := commitLoad(ctx, origin, table, l)
	if err != nil {
		return res, err
	}
	res.committed = time.Since(t0)
	if l.backlog {
		t0, cpu0 = time.Now(), cpuTime()
		if ing, stop, err = startIngest(ctx, cfg, false); err != nil {
			return res, err
		}
	}
	if err := waitDurable(ctx, ing, last); err != nil {
		return res, err
	}
	res.durable, res.cpu = time.Since(t0), cpuTime()-cpu0
	return res, nil
}

// startIngest runs an ingest node until stop; with wait it returns once
// the node is streaming (a heartbeat's marker is in Kafka).
func startIngest(ctx context.Context, cfg ingestnode.Config, wait bool) (*ingestnode.Node, func(), error) {
	ing, err := ingestnode.New(cfg)
	if err != nil {
		return nil, func() {}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = ing.Run(runCtx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	for deadline := time.Now().Add(60 * time.Second); wait && ing.Durable().IsZero(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			return nil, stop, errors.New("ingest did not start streaming in 60s")
		}
	}
	return ing, stop, nil
}

// commitLoad commits l at the origin and returns an LSN at or after the
// last commit's end.
func commitLoad(ctx context.Context, origin, table string, l ingestLoad) (schemas.LSN, error) {
	per := max(l.txsPerRequest, 1)
	var wg sync.WaitGroup
	errs := make([]error, l.workers)
	for w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, origin)
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close(context.Background())
			// Worker w commits transactions w, w+workers, ...; each request
			// carries up to per explicit transactions (simple protocol).
			var sql strings.Builder
			for tx := w; tx < l.txs; tx += l.workers * per {
				sql.Reset()
				for k := tx; k < min(tx+l.workers*per, l.txs); k += l.workers {
					lo := int64(k) * int64(l.rows)
					fmt.Fprintf(&sql, "BEGIN; INSERT INTO %s SELECT g, g::int %% 1000, 'row ' || g FROM generate_series(%d, %d) g; COMMIT;",
						table, lo, lo+int64(l.rows)-1)
				}
				if _, err := c.Exec(ctx, sql.String()); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	c, err := pgx.Connect(ctx, origin)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var s string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, err
	}
	return schemas.ParseLSN(s)
}

// waitDurable polls the ingest's durable position until it reaches lsn.
// The position read after the last commit may lie past its end (a
// heartbeat in between), and then the next heartbeat's marker gets there:
// at most one heartbeat interval of error.
func waitDurable(ctx context.Context, ing *ingestnode.Node, lsn schemas.LSN) error {
	deadline := time.Now().Add(5 * time.Minute)
	for ing.Durable().LSN < lsn {
		if time.Now().After(deadline) {
			return fmt.Errorf("durable position %s did not reach %s in 5 minutes", ing.Durable(), lsn)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
