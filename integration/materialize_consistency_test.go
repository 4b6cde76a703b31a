package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/schemas"
)

// jitter sleeps up to max with probability p: injected between the steps
// of fills and of change delivery so that the races they guard show.
func jitter(p float64, max time.Duration) func() {
	return func() {
		if rand.Float64() < p {
			time.Sleep(rand.N(max))
		}
	}
}

// history is, per row, every version whose commit a writer saw
// acknowledged, and when.
type history struct {
	mu   sync.Mutex
	acks map[int][]ack
}

type ack struct {
	ver int
	at  time.Time
}

func (h *history) add(id, ver int, at time.Time) {
	h.mu.Lock()
	h.acks[id] = append(h.acks[id], ack{ver, at})
	h.mu.Unlock()
}

// readRecord is one read: of row id, started at start, returned ver.
type readRecord struct {
	id, ver int
	start   time.Time
	hit     bool
	via     int // which endpoint answered, for reports
}

// stale counts the reads that returned a version older than one whose
// commit had been acknowledged more than bound before the read started.
func (h *history) stale(reads []readRecord, bound time.Duration) (n int, first string) {
	for _, i := range h.staleReads(reads, bound) {
		r := reads[i]
		if n == 0 {
			first = "row " + strconv.Itoa(r.id) + ": read version " + strconv.Itoa(r.ver) + " (hit " + strconv.FormatBool(r.hit) +
				"), version " + strconv.Itoa(h.newest(r.id, r.start.Add(-bound))) + " committed before " + r.start.Add(-bound).Format(time.StampMicro)
		}
		n++
	}
	return n, first
}

// staleReads are the indexes in reads of those stale counts.
func (h *history) staleReads(reads []readRecord, bound time.Duration) []int {
	var out []int
	ix := h.byTime()
	for i, r := range reads {
		if ix.newest(r.id, r.start.Add(-bound)) > r.ver {
			out = append(out, i)
		}
	}
	return out
}

// ackIndex is, per row, the acknowledgements by time with the running
// maximum version.
type ackIndex map[int]struct {
	at  []time.Time
	max []int
}

func (h *history) byTime() ackIndex {
	ix := ackIndex{}
	for id, acks := range h.acks {
		acks = slices.Clone(acks)
		sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
		x := ix[id]
		m := 0
		for _, a := range acks {
			m = max(m, a.ver)
			x.at = append(x.at, a.at)
			x.max = append(x.max, m)
		}
		ix[id] = x
	}
	return ix
}

// newest is the newest version of row id acknowledged before cut (0 if none).
func (ix ackIndex) newest(id int, cut time.Time) int {
	x := ix[id]
	i := sort.Search(len(x.at), func(i int) bool { return !x.at[i].Before(cut) })
	if i == 0 {
		return 0
	}
	return x.max[i-1]
}

func (h *history) newest(id int, cut time.Time) int { return h.byTime().newest(id, cut) }

// TestMaterializerConsistencyAdversarial runs concurrent writers and
// readers against the real origin through the change capture and the
// materializer, with random delays between the steps of fills and of
// change application, and checks every read against the origin's
// history: no read older than the staleness bound, no read-your-writes
// violation, and, once the stream has caught up, no entry that disagrees
// with the origin (a stale fill that survived).
func TestMaterializerConsistencyAdversarial(t *testing.T) {
	t.Parallel()
	const (
		rows   = 64
		minOps = 100_000
		bound  = 500 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	applied := &history{acks: map[int][]ack{}}
	f := startMaterializer(t, []string{"acct"}, `
		CREATE TABLE {name}_acct (id int PRIMARY KEY, ver int NOT NULL);
		INSERT INTO {name}_acct SELECT g, 0 FROM generate_series(1, 64) g;`,
		materialize.Config{StalenessBound: bound, FenceWait: 20 * time.Millisecond, Hooks: adversarialHooks(applied)})
	byParam := "SELECT ver::text FROM " + f.table("acct") + " WHERE id = $1"
	literal := func(id int) string {
		return "SELECT ver::text FROM " + f.table("acct") + " WHERE id = " + strconv.Itoa(id)
	}
	w := adversarialWorkload{
		rows: rows, readers: 6, writers: 3, minOps: minOps,
		minTime: 5 * time.Second, maxTime: 60 * time.Second, hotShare: 0.8, rywShare: 0.25,
		write: func(ctx context.Context, _, id int) (int, error) {
			var ver int
			err := f.pool.QueryRow(ctx, "UPDATE "+f.table("acct")+" SET ver = ver + 1 WHERE id = $1 RETURNING ver", id).Scan(&ver)
			return ver, err
		},
		// Read-your-writes: the session's next read waits for its write.
		readBack: func(ctx context.Context, _, id int) (int, error) {
			fence, err := f.pos.CurrentPosition(ctx)
			if err != nil {
				return 0, err
			}
			got, _, err := f.read(ctx, fence, byParam, strconv.Itoa(id))
			v, _ := strconv.Atoi(got)
			return v, err
		},
		read: func(ctx context.Context, r, id int) (int, bool, error) {
			var got string
			var hit bool
			var err error
			if r%2 == 0 {
				got, hit, err = f.read(ctx, schemas.Position{}, byParam, strconv.Itoa(id))
			} else {
				got, hit, err = f.read(ctx, schemas.Position{}, literal(id))
			}
			v, _ := strconv.Atoi(got)
			return v, hit, err
		},
	}
	res := w.run(ctx, t)

	// Caught up, every cached entry must equal the origin.
	f.catchUp(ctx)
	time.Sleep(50 * time.Millisecond)
	staleFills := 0
	for id := 1; id <= rows; id++ {
		for _, sql := range []string{byParam, literal(id)} {
			var params []string
			if sql == byParam {
				params = []string{strconv.Itoa(id)}
			}
			got, hit, err := f.read(ctx, schemas.Position{}, sql, params...)
			if err != nil {
				t.Fatal(err)
			}
			var want string
			if err := f.pool.QueryRow(ctx, "SELECT ver::text FROM "+f.table("acct")+" WHERE id = $1", id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if hit && got != want {
				staleFills++
				t.Errorf("row %d: cache holds version %s, origin %s", id, got, want)
			}
		}
	}
	s := f.m.Stats()
	hits := res.hits()
	t.Logf("%d ops in %s: %d reads (%d hits), stats %+v", res.ops, res.elapsed.Round(time.Millisecond), len(res.reads), hits, s)
	res.check(t, applied, bound, minOps)
	if staleFills > 0 {
		t.Errorf("%d stale fills survived", staleFills)
	}
	if hits == 0 || s.StaleFills == 0 || s.Invalidated == 0 {
		t.Errorf("the test did not exercise the cache: %d hits, %d refused fills, %d invalidations", hits, s.StaleFills, s.Invalidated)
	}
}

// describeStale reports the stale reads (as stale counts them) grouped by
// endpoint and row: how many, when, which versions, and the row's
// acknowledged writes around that window, to tell a slow stream from a
// lost invalidation.
func (h *history) describeStale(reads []readRecord, bound time.Duration) string {
	type group struct {
		n           int
		first, last time.Time
		vers        map[int]int
	}
	groups := map[[2]int]*group{}
	for _, i := range h.staleReads(reads, bound) {
		r := reads[i]
		k := [2]int{r.via, r.id}
		g := groups[k]
		if g == nil {
			g = &group{first: r.start, last: r.start, vers: map[int]int{}}
			groups[k] = g
		}
		g.n++
		g.vers[r.ver]++
		if r.start.Before(g.first) {
			g.first = r.start
		}
		if r.start.After(g.last) {
			g.last = r.start
		}
	}
	var b strings.Builder
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, g := range groups {
		fmt.Fprintf(&b, "endpoint %d row %d: %d stale reads from %s to %s, versions read %v; writes around:",
			k[0], k[1], g.n, g.first.Format(time.StampMicro), g.last.Format(time.StampMicro), g.vers)
		for _, a := range h.acks[k[1]] {
			if a.at.After(g.first.Add(-3*bound)) && a.at.Before(g.last.Add(bound)) {
				fmt.Fprintf(&b, " %d@%s", a.ver, a.at.Format("15:04:05.000"))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
