package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/region"
	"github.com/freshetdb/freshet/internal/testenv"
)

// TestKafkaProcessesUnderFaults runs `freshet ingest` and two `freshet
// serve --region` processes against the origin and a broker of the test's
// own, with writers (per-row version counters) and readers through both
// regions. During the load it kills -9 the ingest and starts it again,
// kills -9 a region and starts it again (empty cache, committed offsets),
// and stops and restarts the broker. Every read is checked against the
// origin's history: none older than the staleness bound, no read after a
// write in the same session older than that write. Afterwards every
// version of every row is in the topic, and each region, with every row
// cached, serves each row's next write.
func TestKafkaProcessesUnderFaults(t *testing.T) {
	const (
		rows  = 24
		bound = time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pgURL := testenv.PostgresURL(t)
	k := testenv.StartPrivateKafka(t)
	bin := buildFreshet(t)
	super, name, table := processSource(ctx, t, "kp", rows)
	brokers := k.Brokers[0]
	ingestAdmin := freePort(t)
	ing := startChild(t, bin, "ingest", "ingest", "--source", pgURL, "--kafka", brokers, "--topic", name, "--partitions", "3",
		"--slot", name+"_slot", "--publication", name+"_pub", "--tables", "public."+table, "--heartbeat", "20ms", "--metrics", ingestAdmin)
	type regionProc struct {
		*child
		listen, admin string
	}
	var regions []*regionProc
	for _, r := range []string{"a", "b"} {
		rp := &regionProc{listen: freePort(t), admin: freePort(t)}
		rp.child = startChild(t, bin, "region-"+r, "serve", "--region", name+"_"+r, "--kafka", brokers, "--origin", pgURL,
			"--listen", rp.listen, "--topic", name, "--publication", name+"_pub", "--staleness-bound", bound.String(),
			"--cache-bytes", "16000000", "--metrics", rp.admin)
		regions = append(regions, rp)
	}
	caughtUp := func(within time.Duration) {
		t.Helper()
		p := originLSN(ctx, t, super)
		for _, r := range regions {
			regionCaughtUp(ctx, t, r.admin, p, within)
		}
	}
	caughtUp(90 * time.Second)

	sel := "SELECT ver FROM " + table + " WHERE id = $1"
	h := &history{acks: map[int][]ack{}}
	var stop atomic.Bool
	var ryw, writes, errs atomic.Int64
	var mu sync.Mutex
	var reads []readRecord
	var wg sync.WaitGroup
	connect := func(addr string) *pgx.Conn {
		for !stop.Load() && ctx.Err() == nil {
			c, err := pgx.Connect(ctx, withHost(pgURL, addr))
			if err == nil {
				return c
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	for i, r := range []int{0, 1, 0, 1} { // two writers, two readers per region
		addr := regions[r].listen
		writer := i < 2
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pgx.Conn
			var local []readRecord
			defer func() {
				mu.Lock()
				reads = append(reads, local...)
				mu.Unlock()
			}()
			for !stop.Load() {
				if c == nil {
					if c = connect(addr); c == nil {
						return
					}
				}
				id := 1 + rand.N(rows)
				if writer {
					var ver, got int
					if err := c.QueryRow(ctx, "UPDATE "+table+" SET ver = ver + 1 WHERE id = $1 RETURNING ver", id).Scan(&ver); err != nil {
						errs.Add(1)
						c.Close(ctx)
						c = nil
						continue
					}
					h.add(id, ver, time.Now())
					writes.Add(1)
					if err := c.QueryRow(ctx, sel, id).Scan(&got); err != nil {
						errs.Add(1)
						c.Close(ctx)
						c = nil
						continue
					}
					if got < ver {
						ryw.Add(1)
					}
					continue
				}
				for range 3 {
					t0 := time.Now()
					var v int
					if err := c.QueryRow(ctx, sel, id).Scan(&v); err != nil {
						errs.Add(1)
						c.Close(ctx)
						c = nil
						break
					}
					local = append(local, readRecord{id: id, ver: v, start: t0, via: r})
				}
			}
			if c != nil {
				c.Close(ctx)
			}
		}()
	}
	began := time.Now()
	step := func(what string) {
		t.Logf("%s at %s (%s): %d writes, %d client errors so far", what, time.Since(began).Round(time.Millisecond),
			time.Now().Format(time.StampMicro), writes.Load(), errs.Load())
	}
	time.Sleep(2 * time.Second)
	step("warm")

	ing.kill()
	time.Sleep(time.Second)
	ing.start()
	caughtUp(90 * time.Second)
	step("ingest killed and restarted")

	regions[1].kill()
	time.Sleep(500 * time.Millisecond)
	regions[1].start()
	caughtUp(90 * time.Second)
	step("region b killed and restarted")

	k.Stop(t)
	for _, r := range regions {
		regionTurnsStale(ctx, t, r.admin, 30*time.Second) // no markers: past the bound, tunneling, and saying so
	}
	k.Resume(t)
	caughtUp(2 * time.Minute)
	step("broker stopped and restarted")
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	caughtUp(90 * time.Second)

	st, err := ingestStatus(ctx, ingestAdmin)
	if err != nil || st.Restarts == 0 || !st.KafkaUp {
		t.Errorf("ingest status after the broker restart: %+v, %v; want restarts > 0 and kafka up", st, err)
	}
	if n, first := h.stale(reads, bound); n > 0 {
		t.Errorf("%d of %d reads older than the staleness bound %s; first: %s", n, len(reads), bound, first)
		t.Logf("stale reads by region and row:\n%s", h.describeStale(reads, bound))
		for _, r := range regions {
			t.Logf("region %s status: %s", r.name, rawStatus(ctx, r.admin))
		}
	}
	if v := ryw.Load(); v > 0 {
		t.Errorf("%d read-your-writes violations", v)
	}
	if writes.Load() < 50 || len(reads) < 100 {
		t.Errorf("only %d writes and %d reads: the load did not run", writes.Load(), len(reads))
	}
	checkTopicHasEveryVersion(ctx, t, k.Brokers, name, super, table)
	checkRegionsServeNextWrite(ctx, t, super, table, rows, func() {
		p := originLSN(ctx, t, super)
		for _, r := range regions {
			regionCaughtUp(ctx, t, r.admin, p, 60*time.Second)
		}
	}, []string{regions[0].listen, regions[1].listen}, pgURL)
	for _, r := range regions {
		var s region.Status
		if err := getStatus(ctx, r.admin, &s); err != nil || s.Cache == nil || s.Cache.Hits == 0 {
			t.Errorf("region %s: no cache hits: %+v, %v", r.name, s.Cache, err)
		}
	}
	t.Logf("%d writes, %d reads checked, %d client errors while processes were killed", writes.Load(), len(reads), errs.Load())
}

// checkTopicHasEveryVersion reads the topic from its start as a new
// region and checks that every row's versions 1..final (the writers add
// one at a time) each reached Kafka: no change was lost by the ingest's
// kill or the broker's restart.
func checkTopicHasEveryVersion(ctx context.Context, t *testing.T, brokers []string, topic string, super *pgx.Conn, table string) {
	t.Helper()
	final := map[int]int{}
	rows, err := super.Query(ctx, "SELECT id, ver FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, ver int
		if err := rows.Scan(&id, &ver); err != nil {
			t.Fatal(err)
		}
		final[id] = ver
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	target := originLSN(ctx, t, super)
	var mu sync.Mutex
	seen := map[int]map[int]bool{}
	reached := make(chan struct{})
	var once sync.Once
	h := kafka.HandlerFunc(func(_ context.Context, ev kafka.Event) error {
		switch {
		case ev.Kind == kafka.EventChange && len(ev.Change.After) == 2:
			id, _ := strconv.Atoi(fmt.Sprint(ev.Change.After[0]))
			ver, _ := strconv.Atoi(fmt.Sprint(ev.Change.After[1]))
			mu.Lock()
			if seen[id] == nil {
				seen[id] = map[int]bool{}
			}
			seen[id][ver] = true
			mu.Unlock()
		case ev.Kind == kafka.EventWatermark && ev.Watermark.Position.Covers(target):
			once.Do(func() { close(reached) })
		}
		return nil
	})
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic + "_check", Handler: h, FromBeginning: true})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	select {
	case <-reached:
	case <-time.After(90 * time.Second):
		t.Fatalf("reading the topic back did not reach %s", target)
	}
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for id, f := range final {
		for v := 1; v <= f; v++ {
			if !seen[id][v] {
				if lost == 0 {
					t.Errorf("row %d: version %d of %d never reached Kafka", id, v, f)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d row versions lost between the origin and Kafka", lost)
	}
}

// checkRegionsServeNextWrite caches every row in every region (each read
// twice), writes every row once more at the origin, and checks that each
// region then serves every row's new version: a change a region's
// consumer missed would leave its cached old version in place.
func checkRegionsServeNextWrite(ctx context.Context, t *testing.T, super *pgx.Conn, table string, rows int, caughtUp func(), addrs []string, pgURL string) {
	t.Helper()
	sel := "SELECT ver FROM " + table + " WHERE id = $1"
	var conns []*pgx.Conn
	for _, a := range addrs {
		c, err := pgx.Connect(ctx, withHost(pgURL, a))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		conns = append(conns, c)
	}
	read := func(c *pgx.Conn, id int) int {
		var v int
		if err := c.QueryRow(ctx, sel, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for ri, c := range conns {
		for id := 1; id <= rows; id++ {
			var want int
			if err := super.QueryRow(ctx, sel, id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if got := read(c, id); got != want {
					t.Errorf("region %d row %d: %d, origin %d", ri, id, got, want)
				}
			}
		}
	}
	if _, err := super.Exec(ctx, "UPDATE "+table+" SET ver = ver + 1"); err != nil {
		t.Fatal(err)
	}
	caughtUp()
	for ri, c := range conns {
		for id := 1; id <= rows; id++ {
			var want int
			if err := super.QueryRow(ctx, sel, id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if got := read(c, id); got != want {
				t.Errorf("region %d row %d: serves version %d after the origin wrote %d", ri, id, got, want)
			}
		}
	}
}
