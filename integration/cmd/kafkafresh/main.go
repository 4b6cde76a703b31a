// Command kafkafresh measures the Kafka deployment end to end, with the
// nodes in this process:
//   - ingest throughput: row changes committed at the origin until `freshet
//     ingest` (internal/ingestnode) has them acknowledged by Kafka, for a
//     few large transactions, many small ones, and a backlog;
//   - freshness: the time from an origin commit until each of two regional
//     nodes (`freshet serve --region`, fed by `freshet ingest` through
//     Kafka on loopback) returns the new value of a cached read. Readers
//     pause between polls, as the embedded figure's (integration/cmd/demo)
//     do: two readers polling without a pause keep both cores of the test
//     machine busy and slow the broker and the nodes they measure.
//
// It runs inside the test environment (make bench-kafka-e2e):
//
//	integration/env/freshet-env run --only pg,kafka -- go run ./integration/cmd/kafkafresh
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/ingestnode"
	"github.com/freshetdb/freshet/internal/region"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kafkafresh:", err)
		os.Exit(1)
	}
}

func run() error {
	origin := flag.String("origin", os.Getenv("FRESHET_TEST_PG_URL"), "origin PostgreSQL URL (superuser)")
	brokers := flag.String("kafka", os.Getenv("FRESHET_TEST_KAFKA_BROKERS"), "Kafka brokers")
	n := flag.Int("n", 300, "updates to time (freshness)")
	mode := flag.String("mode", "all", "what to measure: ingest, freshness or all")
	rows := flag.Int("rows", 200000, "row changes per ingest load")
	bigTxs := flag.Int("big-txs", 4, "transactions the large-transaction ingest load is split into")
	smallRows := flag.Int("small-rows", 10, "rows per transaction of the small-transaction ingest load")
	partitions := flag.Int("partitions", 0, "partitions of the freshness topic; 0: the ingest's default")
	heartbeat := flag.Duration("heartbeat", 20*time.Millisecond, "the ingest's heartbeat interval (freshness)")
	poll := flag.Duration("poll", 100*time.Microsecond, "pause between a reader's polls (freshness); 0 polls without pause")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (ingest and origin clients) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *origin == "" || *brokers == "" {
		return errors.New("needs -origin and -kafka (run it inside freshet-env run --only pg,kafka)")
	}
	if *mode != "all" && *mode != "ingest" && *mode != "freshness" {
		return fmt.Errorf("-mode %q: want ingest, freshness or all", *mode)
	}
	if *rows <= 0 || *bigTxs <= 0 || *smallRows <= 0 {
		return errors.New("-rows, -big-txs and -small-rows must be positive")
	}
	if *partitions < 0 || *heartbeat <= 0 || *poll < 0 {
		return errors.New("-partitions and -poll must not be negative, -heartbeat must be positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	super, err := pgx.Connect(ctx, *origin)
	if err != nil {
		return err
	}
	defer super.Close(context.Background())
	kafka := strings.Split(*brokers, ",")
	if *mode != "freshness" {
		loads := []ingestLoad{
			{name: fmt.Sprintf("(%d x %d-row transactions)", *bigTxs, *rows / *bigTxs), txs: *bigTxs, rows: *rows / *bigTxs, workers: 1, txsPerRequest: 1},
			{name: fmt.Sprintf("(%d x %d-row transactions)", *rows / *smallRows, *smallRows), txs: *rows / *smallRows, rows: *smallRows, workers: 4, txsPerRequest: 50},
			{name: fmt.Sprintf("(backlog, %d x %d-row transactions)", *rows / *smallRows, *smallRows), txs: *rows / *smallRows, rows: *smallRows, workers: 4, txsPerRequest: 50, backlog: true},
		}
		if _, err := ingestRates(ctx, super, *origin, kafka, loads); err != nil {
			return err
		}
	}
	if *mode == "ingest" {
		return nil
	}
	name := "kf_" + randHex()
	table := name + "_t"
	if _, err := super.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, v int NOT NULL); INSERT INTO "+table+" VALUES (1, 0)"); err != nil {
		return err
	}
	defer cleanup(super, name, table)
	addrs, stop, err := start(ctx, *origin, kafka, name, table, *partitions, *heartbeat)
	if err != nil {
		return err
	}
	defer stop()
	ds, err := freshness(ctx, super, *origin, addrs, table, *n, *poll)
	if err != nil {
		return err
	}
	for i, d := range ds {
		slices.Sort(d)
		fmt.Printf("freshness through Kafka, region %c: p50 %s  p99 %s  max %s  (n=%d, polls %s apart)\n", 'a'+i,
			d[len(d)/2].Round(10*time.Microsecond), d[len(d)*99/100].Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond), len(d), *poll)
	}
	return nil
}

func randHex() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// start runs an ingest and two regions; it returns the regions' client
// addresses once both have a watermark.
func start(ctx context.Context, origin string, brokers []string, name, table string, partitions int, heartbeat time.Duration) ([]string, func(), error) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := func() { cancel(); wg.Wait() }
	ing, err := ingestnode.New(ingestnode.Config{Source: origin, Brokers: brokers, Topic: name, Partitions: partitions,
		Slot: name + "_slot", Publication: name + "_pub", Tables: []string{"public." + table}, Heartbeat: heartbeat})
	if err != nil {
		return nil, stop, err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = ing.Run(runCtx) }()
	var addrs []string
	for _, r := range []string{"a", "b"} {
		node, err := region.New(region.Config{Region: name + "_" + r, Brokers: brokers, Topic: name, Origin: origin,
			Publication: name + "_pub", Listen: "127.0.0.1:0", CatalogInterval: -1})
		if err != nil {
			stop()
			return nil, stop, err
		}
		ready := make(chan string, 1)
		wg.Add(1)
		go func() { defer wg.Done(); _ = node.Run(runCtx, func(a string) { ready <- a }) }()
		select {
		case a := <-ready:
			addrs = append(addrs, a)
		case <-time.After(60 * time.Second):
			stop()
			return nil, stop, errors.New("region did not start")
		}
		for deadline := time.Now().Add(60 * time.Second); !node.Status().Watermark.Set; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				stop()
				return nil, stop, errors.New("region has no watermark after 60s")
			}
		}
	}
	return addrs, stop, nil
}

// freshness updates the row at the origin n times and, for each region,
// polls a cached read of it, pause apart, until the new value is returned.
func freshness(ctx context.Context, super *pgx.Conn, origin string, addrs []string, table string, n int, pause time.Duration) ([][]time.Duration, error) {
	var conns []*pgx.Conn
	for _, a := range addrs {
		c, err := pgx.Connect(ctx, withHost(origin, a))
		if err != nil {
			return nil, err
		}
		defer c.Close(context.Background())
		conns = append(conns, c)
	}
	q := "SELECT v FROM " + table + " WHERE id = 1"
	out := make([][]time.Duration, len(conns))
	for i := range n {
		for _, c := range conns { // cache the current value
			var v int
			if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
				return nil, err
			}
		}
		if _, err := super.Exec(ctx, "UPDATE "+table+" SET v = $1 WHERE id = 1", i+1); err != nil {
			return nil, err
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(conns))
		for ri, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := -1; ; time.Sleep(pause) {
					if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
						errs[ri] = err
						return
					}
					if v == i+1 {
						break
					}
					if time.Since(t0) > 10*time.Second {
						errs[ri] = fmt.Errorf("update %d not seen in 10s", i)
						return
					}
				}
				out[ri] = append(out[ri], time.Since(t0))
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, nil
}

func withHost(u, addr string) string {
	at := strings.Index(u, "@")
	rest := u[at+1:]
	end := strings.IndexAny(rest, "/?")
	return u[:at+1] + addr + rest[end:]
}

func cleanup(super *pgx.Conn, name, table string) {
	bg := context.Background()
	for range 50 {
		if _, err := super.Exec(bg, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, name+"_slot"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, _ = super.Exec(bg, "DROP PUBLICATION IF EXISTS "+name+"_pub")
	_, _ = super.Exec(bg, "DROP TABLE IF EXISTS "+table)
}
