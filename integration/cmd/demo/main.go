// Command demo is `make demo`: against a throwaway PostgreSQL from the
// test environment it loads a small dataset, starts `freshet up`, drives a
// read-heavy workload with concurrent writes through it for a while, and
// prints the hit ratio, latency from cache and from the origin,
// freshness, and the number of stale reads found.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type config struct {
	origin   string
	duration time.Duration
	readers  int
	reads    int // per second through freshet, all readers together; 0: flat out
	writes   int // per second
	rows     int
	bound    time.Duration
}

func run() error {
	var c config
	flag.StringVar(&c.origin, "origin", os.Getenv("FRESHET_TEST_PG_URL"), "origin PostgreSQL URL (superuser)")
	flag.DurationVar(&c.duration, "duration", 30*time.Second, "workload duration")
	flag.IntVar(&c.readers, "readers", 8, "concurrent readers through freshet")
	flag.IntVar(&c.reads, "reads", 0, "reads per second through freshet, all readers together (0: as fast as they go)")
	flag.IntVar(&c.writes, "writes", 100, "writes per second at the origin")
	flag.IntVar(&c.rows, "rows", 10000, "rows in the dataset")
	flag.DurationVar(&c.bound, "staleness-bound", 5*time.Second, "freshet's staleness bound; a read older than it is stale")
	flag.Parse()
	if c.origin == "" {
		return fmt.Errorf("no origin: run under integration/env/freshet-env run --only pg, or pass -origin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.duration+5*time.Minute)
	defer cancel()

	fmt.Println("== loading the dataset")
	origin, err := pgxpool.New(ctx, c.origin)
	if err != nil {
		return err
	}
	defer origin.Close()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	table := "demo_products_" + suffix
	if _, err := origin.Exec(ctx, fmt.Sprintf(`
		CREATE TABLE %[1]s (id int PRIMARY KEY, category int NOT NULL, name text NOT NULL, price int NOT NULL, version int NOT NULL DEFAULT 0);
		INSERT INTO %[1]s SELECT g, g %% 50, 'product ' || g, 100 + g %% 900, 0 FROM generate_series(0, %[2]d) g;
		ANALYZE %[1]s;`, table, c.rows)); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	slot, pub := "demo_"+suffix, "demo_"+suffix
	defer func() {
		bg := context.Background()
		for range 50 {
			if _, err := origin.Exec(bg, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = origin.Exec(bg, "DROP PUBLICATION IF EXISTS "+pub)
		_, _ = origin.Exec(bg, "DROP TABLE IF EXISTS "+table)
	}()

	fmt.Println("== starting freshet up")
	f, err := startFreshet(ctx, c, slot, pub)
	if err != nil {
		return err
	}
	defer f.stop()
	// A connection per reader: a pool smaller than its readers would
	// measure its own queue.
	var ps pools
	ps.origin = origin
	for _, p := range []struct {
		into  **pgxpool.Pool
		url   string
		conns int
	}{{&ps.through, f.url, c.readers}, {&ps.probe, f.url, 1}, {&ps.pacedThrough, f.url, 1}, {&ps.pacedOrigin, c.origin, 1}} {
		if *p.into, err = newPool(ctx, p.url, p.conns); err != nil {
			return err
		}
		defer (*p.into).Close()
	}
	if err := waitServing(ctx, ps.through, table); err != nil {
		return err
	}

	rate := "as fast as they go"
	if c.reads > 0 {
		rate = strconv.Itoa(c.reads) + " reads/s in all"
	}
	fmt.Printf("== workload: %d readers through freshet (%s), %d writes/s at the origin, %s\n", c.readers, rate, c.writes, c.duration)
	w := newWorkload(c, table)
	w.run(ctx, ps)
	fmt.Println()
	return w.report(f)
}

// freshet is the `freshet up` child process.
type freshet struct {
	cmd     *exec.Cmd
	url     string
	metrics string
	dir     string
}

func startFreshet(ctx context.Context, c config, slot, pub string) (*freshet, error) {
	dir, err := os.MkdirTemp("", "freshet-demo")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "freshet")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/freshet")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build freshet: %w", err)
	}
	port, mport := freePort(), freePort()
	f := &freshet{dir: dir, metrics: "http://127.0.0.1:" + mport + "/metrics"}
	f.cmd = exec.Command(bin, "up", "--origin", c.origin, "--listen", "127.0.0.1:"+port,
		"--metrics", "127.0.0.1:"+mport, "--slot", slot, "--publication", pub,
		"--staleness-bound", c.bound.String())
	logf, err := os.Create(filepath.Join(dir, "freshet.log"))
	if err != nil {
		return nil, err
	}
	f.cmd.Stdout, f.cmd.Stderr = logf, logf
	if err := f.cmd.Start(); err != nil {
		return nil, err
	}
	u := strings.Replace(c.origin, hostPort(c.origin), "127.0.0.1:"+port, 1)
	f.url = u
	fmt.Printf("   freshet up --origin … --listen 127.0.0.1:%s (pid %d, log %s)\n", port, f.cmd.Process.Pid, logf.Name())
	return f, nil
}

func (f *freshet) stop() {
	if f.cmd.Process != nil {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = f.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = f.cmd.Process.Kill()
			<-done
		}
	}
	_ = os.RemoveAll(f.dir)
}

func hostPort(url string) string {
	rest := url[strings.Index(url, "@")+1:]
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// freePort is a loopback port the kernel handed out a moment ago: good
// enough for a demo.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "6432"
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func waitServing(ctx context.Context, p *pgxpool.Pool, table string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := p.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = 0").Scan(&n); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("freshet did not start serving within a minute")
}

// workload is the traffic and what it observed.
type workload struct {
	c     config
	table string

	mu       sync.Mutex
	acks     map[int][]ack
	reads    []read
	through  []time.Duration
	direct   []time.Duration // paced point reads straight to PostgreSQL
	paced    []time.Duration // the same paced reads through freshet
	fresh    []time.Duration
	errors   atomic.Int64
	nwrites  atomic.Int64
	aggReads atomic.Int64
}

type ack struct {
	ver int
	at  time.Time
}

type read struct {
	id, ver int
	start   time.Time
}

func newWorkload(c config, table string) *workload {
	return &workload{c: c, table: table, acks: map[int][]ack{}}
}

// pools are the workload's connections: the readers', the writer's (origin),
// the freshness probe's, and one each for the paced readers.
type pools struct {
	origin, through, probe, pacedThrough, pacedOrigin *pgxpool.Pool
}

func newPool(ctx context.Context, url string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(conns)
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (w *workload) run(ctx context.Context, ps pools) {
	ctx, cancel := context.WithTimeout(ctx, w.c.duration)
	defer cancel()
	var wg sync.WaitGroup
	zipf := func(r *rand.Rand) *rand.Zipf { return rand.NewZipf(r, 1.1, 1, uint64(w.c.rows-1)) }
	for i := range w.c.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.reader(ctx, ps.through, zipf(rand.New(rand.NewPCG(uint64(i), 1))), i)
		}()
	}
	wg.Add(4)
	go func() { defer wg.Done(); w.writer(ctx, ps.origin, zipf(rand.New(rand.NewPCG(99, 2)))) }()
	go func() {
		defer wg.Done()
		w.pacedReader(ctx, ps.pacedOrigin, zipf(rand.New(rand.NewPCG(98, 3))), &w.direct)
	}()
	go func() {
		defer wg.Done()
		w.pacedReader(ctx, ps.pacedThrough, zipf(rand.New(rand.NewPCG(98, 3))), &w.paced)
	}()
	go func() { defer wg.Done(); w.freshness(ctx, ps.origin, ps.probe) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	start := time.Now()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				w.mu.Lock()
				n := len(w.reads)
				w.mu.Unlock()
				fmt.Printf("   %4.0fs  %d reads, %d writes\n", time.Since(start).Seconds(), n, w.nwrites.Load())
			}
		}
	}()
	wg.Wait()
}

func (w *workload) reader(ctx context.Context, p *pgxpool.Pool, z *rand.Zipf, i int) {
	point := "SELECT version, price, name FROM " + w.table + " WHERE id = $1"
	agg := "SELECT count(*), sum(price) FROM " + w.table + " WHERE category = $1"
	mode := pgx.QueryExecModeCacheStatement
	if i%2 == 1 {
		mode = pgx.QueryExecModeSimpleProtocol
	}
	pace := func() {}
	if w.c.reads > 0 {
		t := time.NewTicker(time.Duration(w.c.readers) * time.Second / time.Duration(w.c.reads))
		defer t.Stop()
		pace = func() {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	for ctx.Err() == nil {
		pace()
		id := int(z.Uint64()) + 1
		t0 := time.Now()
		if id%10 == 0 {
			var n, sum int64
			if err := p.QueryRow(ctx, agg, mode, id%50).Scan(&n, &sum); err != nil {
				w.fail(ctx, err)
				continue
			}
			w.aggReads.Add(1)
			w.record(&w.through, time.Since(t0), nil)
			continue
		}
		var ver, price int
		var name string
		if err := p.QueryRow(ctx, point, mode, id).Scan(&ver, &price, &name); err != nil {
			w.fail(ctx, err)
			continue
		}
		w.record(&w.through, time.Since(t0), &read{id: id, ver: ver, start: t0})
	}
}

// pacedReader reads a point every 2ms, one at a time: its latency, unlike
// the readers' flat-out closed loop, is not mostly queueing, so the same
// reader through freshet and straight to PostgreSQL compare fairly.
func (w *workload) pacedReader(ctx context.Context, p *pgxpool.Pool, z *rand.Zipf, into *[]time.Duration) {
	point := "SELECT version, price, name FROM " + w.table + " WHERE id = $1"
	for ctx.Err() == nil {
		id := int(z.Uint64()) + 1
		t0 := time.Now()
		var ver, price int
		var name string
		if err := p.QueryRow(ctx, point, id).Scan(&ver, &price, &name); err != nil {
			w.fail(ctx, err)
			continue
		}
		w.record(into, time.Since(t0), nil)
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *workload) writer(ctx context.Context, p *pgxpool.Pool, z *rand.Zipf) {
	every := time.Second / time.Duration(w.c.writes)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id := int(z.Uint64()) + 1
		var ver int
		err := p.QueryRow(ctx, "UPDATE "+w.table+" SET version = version + 1, price = price + 1 WHERE id = $1 RETURNING version", id).Scan(&ver)
		if err != nil {
			w.fail(ctx, err)
			continue
		}
		at := time.Now()
		w.mu.Lock()
		w.acks[id] = append(w.acks[id], ack{ver, at})
		w.mu.Unlock()
		w.nwrites.Add(1)
	}
}

// freshness writes row 0 at the origin and polls it through freshet until
// the new version is returned: origin commit → freshet serves it.
func (w *workload) freshness(ctx context.Context, origin, through *pgxpool.Pool) {
	q := "SELECT version FROM " + w.table + " WHERE id = 0"
	for ctx.Err() == nil {
		var ver int
		if err := through.QueryRow(ctx, q).Scan(&ver); err != nil { // cache it
			w.fail(ctx, err)
			continue
		}
		if err := origin.QueryRow(ctx, "UPDATE "+w.table+" SET version = version + 1 WHERE id = 0 RETURNING version").Scan(&ver); err != nil {
			w.fail(ctx, err)
			continue
		}
		committed := time.Now()
		for ctx.Err() == nil {
			var got int
			if err := through.QueryRow(ctx, q).Scan(&got); err != nil {
				w.fail(ctx, err)
				break
			}
			if got >= ver {
				w.record(&w.fresh, time.Since(committed), nil)
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *workload) record(into *[]time.Duration, d time.Duration, r *read) {
	w.mu.Lock()
	*into = append(*into, d)
	if r != nil {
		w.reads = append(w.reads, *r)
	}
	w.mu.Unlock()
}

func (w *workload) fail(ctx context.Context, err error) {
	if ctx.Err() == nil {
		if w.errors.Add(1) <= 5 {
			fmt.Println("   error:", err)
		}
	}
}

// stale counts reads that returned a version older than one whose commit
// was acknowledged more than bound before the read started.
func (w *workload) stale(bound time.Duration) int {
	n := 0
	for _, r := range w.reads {
		for _, a := range w.acks[r.id] {
			if a.ver > r.ver && a.at.Before(r.start.Add(-bound)) {
				n++
				break
			}
		}
	}
	return n
}

func (w *workload) report(f *freshet) error {
	m, err := scrape(f.metrics)
	if err != nil {
		return fmt.Errorf("read freshet's metrics: %w", err)
	}
	hits, misses, bypass := m["freshet_cache_lookups_total{result=\"hit\"}"], m["freshet_cache_lookups_total{result=\"miss\"}"], m["freshet_cache_lookups_total{result=\"bypass\"}"]
	total := hits + misses + bypass
	fmt.Println("== results")
	fmt.Printf("reads through freshet    %d (%d aggregates), writes at the origin %d, errors %d\n", len(w.through), w.aggReads.Load(), w.nwrites.Load(), w.errors.Load())
	if total > 0 {
		fmt.Printf("hit ratio                %.1f%%  (%.0f hits, %.0f misses filled, %.0f to the origin unfilled)\n", 100*hits/total, hits, misses, bypass)
	}
	fmt.Printf("latency through freshet  p50 %s  p99 %s   (client side, %d readers: hits, misses and aggregates)\n", pct(w.through, 50), pct(w.through, 99), w.c.readers)
	fmt.Printf("paced point reads        p50 %s  p99 %s through freshet, p50 %s  p99 %s straight to PostgreSQL   (client side, one read every 2ms each, under the same load)\n",
		pct(w.paced, 50), pct(w.paced, 99), pct(w.direct, 50), pct(w.direct, 99))
	fmt.Printf("latency from cache       p50 %s  p99 %s   (freshet side, from its histogram)\n",
		histPct(m, "freshet_cache_hit_seconds", 0.5), histPct(m, "freshet_cache_hit_seconds", 0.99))
	fmt.Printf("miss → filled            p50 %s  p99 %s   (freshet side)\n",
		histPct(m, "freshet_cache_miss_seconds", 0.5), histPct(m, "freshet_cache_miss_seconds", 0.99))
	fmt.Printf("freshness                p50 %s  p99 %s   (%d samples: origin commit → freshet returns the new row)\n", pct(w.fresh, 50), pct(w.fresh, 99), len(w.fresh))
	fmt.Printf("stale reads              %d  (older than the %s staleness bound; %d reads checked)\n", w.stale(w.c.bound), w.c.bound, len(w.reads))
	fmt.Printf("reads behind a write     %d  (returned a version older than one acknowledged before the read began, within the bound: replication lag)\n", w.stale(0))
	return nil
}

func pct(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)].Round(time.Microsecond).String()
}

// scrape reads a Prometheus text exposition into name{labels} → value.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// histPct estimates a quantile from a scraped histogram's buckets (the
// upper bound of the bucket it falls in).
func histPct(m map[string]float64, name string, q float64) string {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, name+"_bucket{le=\""); ok {
			le, err := strconv.ParseFloat(strings.TrimSuffix(rest, "\"}"), 64)
			if err == nil {
				bs = append(bs, bucket{le, v})
			}
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return "n/a"
	}
	target := q * bs[len(bs)-1].n
	for _, b := range bs {
		if b.n >= target {
			if math.IsInf(b.le, 1) {
				return "> largest bucket"
			}
			return "≤ " + time.Duration(b.le*float64(time.Second)).Round(time.Microsecond).String()
		}
	}
	return "n/a"
}
