package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5"
)

// TestCDCSurvivesKill9 runs the real reader and pipeline in a separate
// process (integration/cmd/cdcsink) whose bus fsyncs a file before
// acknowledging, kills it with SIGKILL mid-stream while a workload bumps a
// version per row, and restarts it. Every committed version must arrive at
// least once, re-delivered changes must carry their original positions, and
// the slot's confirmed flush LSN must never pass what the file held when
// the process died.
func TestCDCSurvivesKill9(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildSink(t)
	name := testenv.UniqueName("crash")
	super := mustConnectPG(ctx, t, testenv.PostgresURL(t))
	repl := mustConnectPG(ctx, t, testenv.PostgresReplURL(t))
	cfg := postgres.Config{URL: testenv.PostgresReplURL(t), Name: "origin", Slot: name + "_slot", Publication: name + "_pub", Tables: []string{"public." + name}}
	t.Cleanup(func() {
		ctx := context.Background()
		for range 50 {
			if _, err := super.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, cfg.Slot); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = super.Exec(ctx, `DROP PUBLICATION IF EXISTS `+cfg.Publication)
		super.Close(ctx)
		repl.Close(ctx)
	})
	const rows = 20
	mustExec(ctx, t, repl, `CREATE TABLE `+name+` (id int PRIMARY KEY, v int NOT NULL)`)
	mustExec(ctx, t, repl, `INSERT INTO `+name+` SELECT i, 0 FROM generate_series(1, $1::int) i`, rows)
	if _, err := postgres.Setup(ctx, cfg, schemas.Position{}); err != nil {
		t.Fatalf("Setup: %v", err)
	}

	out := filepath.Join(t.TempDir(), "bus.jsonl")
	var wg sync.WaitGroup
	var stopWork atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		workload(ctx, t, repl, name, rows, &stopWork)
	}()

	for cycle := range 3 {
		// The second run ignores the file's marker, as a consumer that
		// kept nothing would: the origin then re-sends everything after
		// the slot's confirmed position, which must come with the same
		// positions as the first time.
		// Before that run, the slot is told of progress rarely, so that it
		// is behind the file when the process dies and the origin does
		// re-send something.
		status := 50 * time.Millisecond
		if cycle == 0 {
			status = time.Minute
		}
		before := countChanges(out)
		sink := startSink(t, bin, cfg, out, cycle != 1, status)
		waitForChanges(t, out, before+200)
		if err := sink.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		_ = sink.Wait()
		cf := inactiveConfirmedFlush(ctx, t, super, cfg.Slot)
		held := lastProgress(t, out)
		if cf > held {
			t.Fatalf("cycle %d: slot confirmed_flush_lsn %s is past the last durable marker %s", cycle, cf, held)
		}
		t.Logf("cycle %d: killed; confirmed_flush_lsn %s, file holds up to %s", cycle, cf, held)
		time.Sleep(200 * time.Millisecond) // let the workload commit while nothing reads
	}
	stopWork.Store(true)
	wg.Wait()

	final := map[int]int{}
	rs, err := repl.Query(ctx, `SELECT id, v FROM `+name)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var id, v int
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		final[id] = v
	}
	if rs.Err() != nil {
		t.Fatal(rs.Err())
	}

	sink := startSink(t, bin, cfg, out, true, 50*time.Millisecond)
	defer func() { _ = sink.Process.Signal(os.Interrupt); _ = sink.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen, dupes := readVersions(t, out, name)
		missing := 0
		for id, v := range final {
			for k := 1; k <= v; k++ {
				if _, ok := seen[[2]int{id, k}]; !ok {
					missing++
				}
			}
		}
		if missing == 0 {
			total := 0
			for _, v := range final {
				total += v
			}
			t.Logf("all %d committed versions arrived; %d re-delivered with their original positions", total, dupes)
			if dupes == 0 {
				t.Fatal("no change was re-delivered: the run without resume should have received some again")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d committed versions never arrived", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func buildSink(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cdcsink")
	cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/cdcsink")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cdcsink: %v\n%s", err, out)
	}
	return bin
}

func startSink(t *testing.T, bin string, cfg postgres.Config, out string, resume bool, status time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "-url", cfg.URL, "-slot", cfg.Slot, "-pub", cfg.Publication, "-file", out, "-status-interval", status.String(),
		"-resume="+strconv.FormatBool(resume))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cdcsink pid %d stderr:\n%s", cmd.Process.Pid, stderr.String())
		}
	})
	return cmd
}

// workload bumps one row's version per transaction, sometimes several rows
// in one transaction, until stop.
func workload(ctx context.Context, t *testing.T, conn *pgx.Conn, table string, rows int, stop *atomic.Bool) {
	for !stop.Load() && ctx.Err() == nil {
		a, b := rand.IntN(rows)+1, rand.IntN(rows)+1
		sql := `UPDATE ` + table + ` SET v = v + 1 WHERE id = $1`
		if a%3 == 0 {
			sql = `UPDATE ` + table + ` SET v = v + 1 WHERE id IN ($1, $2)`
			if _, err := conn.Exec(ctx, sql, a, b); err != nil && ctx.Err() == nil {
				t.Errorf("workload: %v", err)
				return
			}
			continue
		}
		if _, err := conn.Exec(ctx, sql, a); err != nil && ctx.Err() == nil {
			t.Errorf("workload: %v", err)
			return
		}
	}
}

func countChanges(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte(`{"change":`))
}

func waitForChanges(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if countChanges(path) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d changes in %s after 30s", n, path)
}

// inactiveConfirmedFlush waits for the killed process's walsender to let go
// of the slot and reads the slot's confirmed position.
func inactiveConfirmedFlush(ctx context.Context, t *testing.T, conn *pgx.Conn, slot string) schemas.LSN {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		var lsn string
		if err := conn.QueryRow(ctx, `SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &lsn); err != nil {
			t.Fatal(err)
		}
		if !active {
			l, err := schemas.ParseLSN(lsn)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		if time.Now().After(deadline) {
			t.Fatal("slot still active 30s after the kill")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type sinkLine struct {
	Change   json.RawMessage   `json:"change"`
	Progress *schemas.Progress `json:"progress"`
}

func scanSink(t *testing.T, path string, each func(sinkLine)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l sinkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return // a torn last line from the kill
		}
		each(l)
	}
}

func lastProgress(t *testing.T, path string) schemas.LSN {
	var last schemas.LSN
	scanSink(t, path, func(l sinkLine) {
		if l.Progress != nil {
			last = l.Progress.Position.LSN
		}
	})
	return last
}

// readVersions returns the position of every (id, version) seen, failing
// if one arrives twice with different positions, and counts duplicates.
func readVersions(t *testing.T, path, table string) (map[[2]int]schemas.LSN, int) {
	t.Helper()
	seen := map[[2]int]schemas.LSN{}
	dupes := 0
	scanSink(t, path, func(l sinkLine) {
		if l.Change == nil {
			return
		}
		c, err := schemas.UnmarshalChange(l.Change)
		if err != nil {
			t.Fatalf("decode change: %v", err)
		}
		if c.Table != table || c.Op != schemas.OpUpdate {
			return
		}
		key := [2]int{int(c.After[0].(int64)), int(c.After[1].(int64))}
		if prev, ok := seen[key]; ok {
			dupes++
			if prev != c.Position.LSN {
				t.Fatalf("row %d version %d re-delivered at %s, first at %s", key[0], key[1], c.Position.LSN, prev)
			}
		}
		seen[key] = c.Position.LSN
	})
	return seen, dupes
}
