package postgres

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/memory"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5"
)

// benchRows is the size of the captured write load.
const benchRows = 200_000

// captureLoad writes benchRows rows (ints, text, numeric, timestamptz) in
// transactions of 1000 and returns the pgoutput messages the real server
// produced for them, read back through a slot.
func captureLoad(b *testing.B) [][]byte {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	name := testenv.UniqueName("bench")
	exec := func(sql string, args ...any) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE ` + name + ` (id bigint PRIMARY KEY, account int, label text, amount numeric(12,2), at timestamptz)`)
	exec(`CREATE PUBLICATION ` + name + ` FOR TABLE ` + name)
	exec(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	defer func() {
		_, _ = conn.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, name)
		_, _ = conn.Exec(context.Background(), `DROP PUBLICATION `+name)
		_, _ = conn.Exec(context.Background(), `DROP TABLE `+name)
	}()
	for lo := 1; lo <= benchRows; lo += 1000 {
		exec(`INSERT INTO `+name+` SELECT i, i % 97, 'label-' || i, i * 1.25, now() FROM generate_series($1::bigint, $2::bigint) i`, lo, lo+999)
	}
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2)`, name, name)
	if err != nil {
		b.Fatal(err)
	}
	msgs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		b.Fatal(err)
	}
	return msgs
}

// replaySource decodes captured messages as the Reader does and emits the
// committed transactions.
type replaySource struct{ msgs [][]byte }

func (s replaySource) Stream(ctx context.Context, _ schemas.Position, out ingest.Emitter) error {
	a := newAssembler("bench", false)
	for _, m := range s.msgs {
		msg, err := a.parse(m, 1)
		if err != nil {
			return err
		}
		tx, err := a.handle(msg)
		if err != nil {
			return err
		}
		if tx != nil {
			if err := out.Emit(ctx, *tx); err != nil {
				return err
			}
		}
	}
	for !out.Idle() { // everything emitted is on the bus
		time.Sleep(100 * time.Microsecond)
	}
	return errReplayDone
}

var errReplayDone = errors.New("replay done")

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecodePipeline measures freshet's side alone: pgoutput messages
// the real server wrote for a bulk load are decoded (typed values), grouped
// into transactions, pushed through the ingest pipeline into the memory bus
// and read by a subscriber. PostgreSQL's own WAL generation and walsender
// are excluded; BenchmarkStreamFromPostgres includes them.
func BenchmarkDecodePipeline(b *testing.B) {
	msgs := captureLoad(b)
	b.ResetTimer()
	changes, cpu0, t0 := 0, cpuTime(), time.Now()
	for range b.N {
		changes += runReplay(b, msgs)
	}
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.ReportMetric(float64(changes)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(changes), "cpu-ns/change")
}

func runReplay(b *testing.B, msgs [][]byte) int {
	bus, err := memory.New(memory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	sub := bus.Subscribe()
	p, err := ingest.New(ingest.Config{Source: replaySource{msgs: msgs}, Bus: bus, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan int)
	go func() {
		n := 0
		for n < benchRows {
			batch, err := sub.Next(context.Background())
			if err != nil {
				break
			}
			n += len(batch.Changes)
		}
		got <- n
	}()
	if err := p.Run(context.Background()); !errors.Is(err, errReplayDone) {
		b.Fatal(err)
	}
	n := <-got
	if n != benchRows {
		b.Fatalf("bus delivered %d changes, want %d", n, benchRows)
	}
	return n
}

// BenchmarkStreamFromPostgres measures the whole stream: a bulk load is
// written first, then a Reader streams it from the slot through the
// pipeline into the memory bus. Time and CPU are from the start of
// streaming to the last change; the CPU is this process's (decoding and
// pipeline), not the server's.
func BenchmarkStreamFromPostgres(b *testing.B) {
	for range b.N {
		streamOnce(b)
	}
}

func streamOnce(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.PostgresReplURL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	name := testenv.UniqueName("benchs")
	cfg := Config{URL: testenv.PostgresReplURL(b), Name: "bench", Slot: name, Publication: name, Tables: []string{"public." + name}, StatusInterval: time.Second}
	if _, err := conn.Exec(ctx, `CREATE TABLE `+name+` (id bigint PRIMARY KEY, account int, label text, amount numeric(12,2), at timestamptz)`); err != nil {
		b.Fatal(err)
	}
	if _, err := Setup(ctx, cfg, schemas.Position{}); err != nil {
		b.Fatal(err)
	}
	defer func() {
		c := context.Background()
		for range 50 {
			if _, err := conn.Exec(c, `SELECT pg_drop_replication_slot($1)`, name); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = conn.Exec(c, `DROP PUBLICATION `+name)
		_, _ = conn.Exec(c, `DROP TABLE `+name)
	}()
	for lo := 1; lo <= benchRows; lo += 1000 {
		if _, err := conn.Exec(ctx, `INSERT INTO `+name+` SELECT i, i % 97, 'label-' || i, i * 1.25, now() FROM generate_series($1::bigint, $2::bigint) i`, lo, lo+999); err != nil {
			b.Fatal(err)
		}
	}
	reader, err := NewReader(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bus, err := memory.New(memory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	sub := bus.Subscribe()
	p, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	b.StartTimer()
	cpu0, t0 := cpuTime(), time.Now()
	go func() { errc <- p.Run(rctx) }()
	n := 0
	for n < benchRows {
		batch, err := sub.Next(ctx)
		if err != nil {
			b.Fatalf("after %d changes: %v", n, err)
		}
		n += len(batch.Changes)
	}
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/change")
}
