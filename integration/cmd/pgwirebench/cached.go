package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/materialize"
)

// cachedFreshet is freshet with the materializer (freshet up's wiring)
// in front of the benchmark database.
type cachedFreshet struct {
	addr    string
	node    *embedded.Node
	stop    func()
	applied *applyClock
}

// applyClock records, while on, how long after its origin commit
// timestamp each batch with changes was applied (its entries invalidated,
// just before the watermark moves): the change stream's and the
// visibility wait's share of freshness, measured without adding a query.
type applyClock struct {
	mu sync.Mutex
	on bool
	ds []time.Duration
}

func (a *applyClock) beforeAdvance(b *ingest.Batch) {
	if len(b.Changes) == 0 {
		return
	}
	d := time.Since(b.Progress.CommitTime)
	a.mu.Lock()
	if a.on {
		a.ds = append(a.ds, d)
	}
	a.mu.Unlock()
}

func (a *applyClock) start() {
	a.mu.Lock()
	a.on, a.ds = true, nil
	a.mu.Unlock()
}

// stop returns the durations recorded since start, sorted.
func (a *applyClock) stop() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.on = false
	slices.Sort(a.ds)
	return a.ds
}

// startCached starts freshet up's wiring on dbURL; with txPooling, with
// an auth user (the benchmark's own) and transaction pooling.
func startCached(ctx context.Context, dbURL string, txPooling bool) (*cachedFreshet, error) {
	name := fmt.Sprintf("pgwirebench_%d", os.Getpid())
	var clients front.Clients
	if txPooling {
		name += "_tx"
		clients = front.Clients{AuthURL: dbURL, TransactionPooling: true}
	}
	applied := &applyClock{}
	node, err := embedded.New(embedded.Config{
		Origin: dbURL, Listen: "127.0.0.1:0", Slot: name, Publication: name,
		CacheBytes: 2 << 30, Heartbeat: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Hooks: materialize.Hooks{BeforeAdvance: applied.beforeAdvance}, Clients: clients,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- node.Run(runCtx, func(a string) { ready <- a }) }()
	select {
	case addr := <-ready:
		return &cachedFreshet{addr: addr, node: node, applied: applied, stop: func() {
			cancel()
			<-done
			if c, err := pgx.Connect(context.Background(), dbURL); err == nil {
				for range 50 {
					if _, err := c.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", name); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				c.Close(context.Background())
			}
		}}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("freshet up: %v", err)
	}
}

func (c *cachedFreshet) stats() materialize.Stats { return c.node.Materializer().Stats() }

// latencyP50 runs pgbench -c 1 with per-transaction logging and returns
// the median latency.
func latencyP50(bindir, url string, o options) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "pgwirebench-log")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	args := []string{"-n", "-S", "-M", o.mode, "-c", "1", "-T", strconv.Itoa(int(o.duration.Seconds())), "-l", "--log-prefix", filepath.Join(dir, "tx"), url}
	if out, err := exec.Command(filepath.Join(bindir, "pgbench"), args...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tx*"))
	var lat []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) >= 3 {
				if us, err := strconv.Atoi(fields[2]); err == nil {
					lat = append(lat, us)
				}
			}
		}
	}
	if len(lat) == 0 {
		return 0, fmt.Errorf("no pgbench log lines")
	}
	slices.Sort(lat)
	return time.Duration(lat[len(lat)/2]) * time.Microsecond, nil
}

// createAggregateTable makes the 1M-row table; before freshet starts, so
// that it is in the publication freshet reads.
func createAggregateTable(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE agg_1m AS SELECT g AS id, g % 1000 AS v FROM generate_series(1, 1000000) g; ANALYZE agg_1m`)
	return err
}

// aggregate times SELECT count(*), sum(v) over a 1M-row table, direct and
// through freshet once cached (median of runs each).
func aggregate(ctx context.Context, dbURL, cachedURL string) (direct, cached time.Duration, err error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	q := "SELECT count(*), sum(v) FROM agg_1m"
	median := func(c *pgx.Conn, n int) (time.Duration, error) {
		var ds []time.Duration
		for range n {
			t0 := time.Now()
			var cnt, sum int64
			if err := c.QueryRow(ctx, q).Scan(&cnt, &sum); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		return ds[len(ds)/2], nil
	}
	if direct, err = median(conn, 7); err != nil {
		return 0, 0, err
	}
	through, err := pgx.Connect(ctx, cachedURL)
	if err != nil {
		return 0, 0, err
	}
	defer through.Close(ctx)
	for range 100 {
		if _, err := median(through, 2); err != nil {
			return 0, 0, err
		}
		if cachedNow(through, q) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cached, err = median(through, 1001)
	return direct, cached, err
}

func cachedNow(c *pgx.Conn, q string) bool {
	t0 := time.Now()
	var a, b int64
	_ = c.QueryRow(context.Background(), q).Scan(&a, &b)
	return time.Since(t0) < time.Millisecond
}

// freshness updates a row at the origin and polls it through freshet
// until the new value is returned, n times. It returns the sorted
// durations from the update's commit acknowledgement to the first read
// that returns it.
func freshness(ctx context.Context, dbURL, cachedURL string, n int) ([]time.Duration, error) {
	origin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer origin.Close(ctx)
	through, err := pgx.Connect(ctx, cachedURL)
	if err != nil {
		return nil, err
	}
	defer through.Close(ctx)
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
	var ds []time.Duration
	for i := range n {
		var v int
		if err := through.QueryRow(ctx, q).Scan(&v); err != nil {
			return nil, err
		}
		if _, err := origin.Exec(ctx, "UPDATE pgbench_accounts SET abalance = $1 WHERE aid = 1", i+1_000_000); err != nil {
			return nil, err
		}
		t0 := time.Now()
		for {
			if err := through.QueryRow(ctx, q).Scan(&v); err != nil {
				return nil, err
			}
			if v == i+1_000_000 {
				break
			}
			if time.Since(t0) > 10*time.Second {
				return nil, fmt.Errorf("freshness: update %d not seen in 10s", i)
			}
		}
		ds = append(ds, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(ds)
	return ds, nil
}

// quantiles formats p50, p90, p99 and the maximum of sorted ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))] }
	r := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s", r(q(0.5)), r(q(0.9)), r(q(0.99)), r(ds[len(ds)-1]))
}

// loadAverage is the 1-minute load average: freshness on a shared machine
// is mostly scheduling delay, so it is reported with it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
