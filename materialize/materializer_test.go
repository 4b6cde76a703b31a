package materialize

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testCatalog = analyze.NewSnapshot(analyze.SnapshotData{
	Schemas: []string{"public"},
	Relations: []analyze.Relation{
		{Schema: "public", Name: "t", Kind: analyze.KindTable, Columns: []analyze.Column{
			{Name: "id", Type: "int4"}, {Name: "v", Type: "int4"}, {Name: "name", Type: "text"}}},
		{Schema: "public", Name: "u", Kind: analyze.KindTable, Columns: []analyze.Column{
			{Name: "id", Type: "int4"}, {Name: "t_id", Type: "int4"}}},
	},
})

var tColumns = []schemas.Column{
	{Name: "id", Type: "int4", Family: schemas.FamilyInt, Key: true},
	{Name: "v", Type: "int4", Family: schemas.FamilyInt},
	{Name: "name", Type: "text", Family: schemas.FamilyText},
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     testing.TB
	m     *Materializer
	clock *clock
	lsn   schemas.LSN
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog
	}
	cfg.Now = h.clock.Now
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20 // small admission counters: fast tests
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	h.m = m
	h.apply() // a first marker
	return h
}

// apply applies changes as one batch with a marker after them.
func (h *harness) apply(changes ...schemas.Change) {
	h.lsn += 100
	for i := range changes {
		changes[i].Position = schemas.Position{LSN: h.lsn}
		if changes[i].Columns == nil {
			changes[i].Columns = tColumns
		}
		if changes[i].Schema == "" {
			changes[i].Schema = "public"
		}
	}
	_ = h.m.Apply(context.Background(), &ingest.Batch{Changes: changes,
		Progress: schemas.Progress{Position: schemas.Position{LSN: h.lsn}, CommitTime: h.clock.Now()}})
}

func (h *harness) query(sql string, params ...string) *Query {
	h.t.Helper()
	res := h.m.Analyze(analyze.Input{SQL: sql, Session: analyze.SessionKnown})
	if !res.Cacheable {
		h.t.Fatalf("%s: not cacheable: %s %s", sql, res.Reason, res.Detail)
	}
	q := &Query{Analysis: res}
	k := cache.Key{Statement: sql}
	if len(params) > 0 {
		q.Params = &Params{}
		for _, p := range params {
			q.Params.Values = append(q.Params.Values, []byte(p))
			k.Params = append(k.Params, []byte(p))
		}
	}
	q.Key = cache.AppendKey(nil, &k)
	return q
}

// fill misses q and fills it with response; it reports whether the fill
// was admitted.
func (h *harness) fill(q *Query, response string) bool {
	h.t.Helper()
	e, tk, bypass := h.m.Get(context.Background(), q)
	if e != nil || bypass != "" {
		h.t.Fatalf("want a miss, got entry %v bypass %q", e != nil, bypass)
	}
	ok := h.m.Put(tk, []byte(response))
	h.m.store.Wait()
	return ok
}

// hit reports whether q is answered from the cache, and with what.
func (h *harness) hit(q *Query) (string, bool) {
	e, tk, _ := h.m.Get(context.Background(), q)
	h.m.Abandon(tk)
	if e == nil {
		return "", false
	}
	return string(e.Response()), true
}

func update(id, oldV, newV int64) schemas.Change {
	return schemas.Change{Table: "t", Op: schemas.OpUpdate,
		Before: []any{id, oldV, "x"}, After: []any{id, newV, "x"}}
}

func TestPreciseInvalidation(t *testing.T) {
	h := newHarness(t, Config{})
	q5 := h.query("SELECT v FROM t WHERE id = 5")
	q6 := h.query("SELECT v FROM t WHERE id = $1", "6")
	join := h.query("SELECT t.v, u.id FROM t JOIN u ON u.t_id = t.id WHERE u.id = 1")
	all := h.query("SELECT id FROM t WHERE v > 3")
	for _, q := range []*Query{q5, q6, join, all} {
		if !h.fill(q, "r") {
			t.Fatal("fill refused")
		}
	}
	h.apply(update(5, 1, 2))
	for _, c := range []struct {
		name string
		q    *Query
		hit  bool
	}{
		{"id = 5 invalidated", q5, false},
		{"id = $1 (6) kept", q6, true},
		{"join over t invalidated", join, false},
		{"table-wide aggregate invalidated", all, false},
	} {
		if _, ok := h.hit(c.q); ok != c.hit {
			t.Errorf("%s: hit = %v", c.name, ok)
		}
	}
}

func TestTextParameterMatchesIntegerChange(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = $1", " 042")
	h.fill(q, "r")
	h.apply(update(41, 0, 1))
	if _, ok := h.hit(q); !ok {
		t.Fatal("a change to id 41 invalidated id 42")
	}
	h.apply(update(42, 0, 1))
	if _, ok := h.hit(q); ok {
		t.Fatal("a change to int4 42 did not invalidate text parameter ' 042'")
	}
}

func TestInvalidationByBeforeAndAfterImage(t *testing.T) {
	h := newHarness(t, Config{})
	q1 := h.query("SELECT id FROM t WHERE v = 1")
	q2 := h.query("SELECT id FROM t WHERE v = 2")
	q3 := h.query("SELECT id FROM t WHERE v = 3")
	for _, q := range []*Query{q1, q2, q3} {
		h.fill(q, "r")
	}
	h.apply(update(7, 1, 2)) // row leaves v=1, enters v=2
	if _, ok := h.hit(q1); ok {
		t.Error("before image value not invalidated")
	}
	if _, ok := h.hit(q2); ok {
		t.Error("after image value not invalidated")
	}
	if _, ok := h.hit(q3); !ok {
		t.Error("unrelated value invalidated")
	}
}

func TestInsertAndDelete(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id IN (8, 9)")
	h.fill(q, "r")
	h.apply(schemas.Change{Table: "t", Op: schemas.OpCreate, After: []any{int64(9), int64(0), "n"}})
	if _, ok := h.hit(q); ok {
		t.Fatal("insert of id 9 did not invalidate id IN (8, 9)")
	}
	h.fill(q, "r")
	h.apply(schemas.Change{Table: "t", Op: schemas.OpDelete, Before: []any{int64(8), schemas.Absent, schemas.Absent}})
	if _, ok := h.hit(q); ok {
		t.Fatal("delete of id 8 did not invalidate")
	}
}

func TestFallbackWhenBeforeImageLacksColumn(t *testing.T) {
	h := newHarness(t, Config{})
	byV := h.query("SELECT id FROM t WHERE v = 1")
	byID := h.query("SELECT v FROM t WHERE id = 3")
	h.fill(byV, "r")
	h.fill(byID, "r")
	// REPLICA IDENTITY DEFAULT: an update that keeps the key has no old
	// tuple, so the row's old v is unknown.
	h.apply(schemas.Change{Table: "t", Op: schemas.OpUpdate, After: []any{int64(4), int64(9), "x"}})
	if _, ok := h.hit(byV); ok {
		t.Error("v = 1 served though the old v of row 4 is unknown")
	}
	if _, ok := h.hit(byID); !ok {
		t.Error("id = 3 invalidated by a change to key 4")
	}
	if got := h.m.Stats().Fallbacks; got != 1 {
		t.Errorf("fallbacks = %d, want 1", got)
	}
}

func TestTruncateSchemaChangeUnknownColumn(t *testing.T) {
	for _, c := range []struct {
		name   string
		change schemas.Change
	}{
		{"truncate", schemas.Change{Table: "t", Op: schemas.OpTruncate}},
		{"column missing from the stream's shape", schemas.Change{Table: "t", Op: schemas.OpCreate,
			Columns: []schemas.Column{{Name: "other", Type: "int4", Family: schemas.FamilyInt}}, After: []any{int64(1)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			q := h.query("SELECT v FROM t WHERE id = 1")
			h.fill(q, "r")
			h.apply(c.change)
			if _, ok := h.hit(q); ok {
				t.Fatal("still served")
			}
		})
	}
}

func TestSchemaChangeWithoutLoaderStopsCaching(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	h.apply(schemas.Change{Table: "t", Op: schemas.OpSchemaChange})
	if _, _, bypass := h.m.Get(context.Background(), q); bypass != BypassReload {
		t.Fatalf("bypass = %q, want %q", bypass, BypassReload)
	}
}

func TestResetPurges(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	_ = h.m.Apply(context.Background(), &ingest.Batch{Reset: &schemas.Reset{Source: "s", Reason: "slot lost"}})
	if _, _, bypass := h.m.Get(context.Background(), q); bypass != BypassNoWatermark {
		t.Fatalf("after reset: bypass = %q", bypass)
	}
	h.apply()
	if _, ok := h.hit(q); ok {
		t.Fatal("entry survived a reset")
	}
}

func TestStaleFillGuard(t *testing.T) {
	for _, c := range []struct {
		name   string
		change schemas.Change
		admit  bool
	}{
		{"change to the value read", update(5, 0, 1), false},
		{"change to another value", update(6, 0, 1), true},
		{"change to another table", schemas.Change{Table: "u", Op: schemas.OpTruncate}, true},
		{"truncate", schemas.Change{Table: "t", Op: schemas.OpTruncate}, false},
		{"key moved into the value", schemas.Change{Table: "t", Op: schemas.OpUpdate,
			Before: []any{int64(4), int64(0), "x"}, After: []any{int64(5), int64(0), "x"}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			q := h.query("SELECT v FROM t WHERE id = 5")
			_, tk, _ := h.m.Get(context.Background(), q)
			if tk == nil {
				t.Fatal("no ticket")
			}
			// The origin answered from a snapshot before the change;
			// the change is applied before the answer is offered.
			h.apply(c.change)
			if got := h.m.Put(tk, []byte("old")); got != c.admit {
				t.Fatalf("Put = %v, want %v", got, c.admit)
			}
			h.m.store.Wait()
			if _, ok := h.hit(q); ok != c.admit {
				t.Fatalf("served = %v, want %v", ok, c.admit)
			}
		})
	}
}

func TestStaleFillGuardTableLevel(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT id FROM t WHERE v > 3")
	_, tk, _ := h.m.Get(context.Background(), q)
	h.apply(update(99, 0, 1))
	if h.m.Put(tk, []byte("old")) {
		t.Fatal("table-level fill admitted after a change to the table")
	}
}

func TestStalenessBound(t *testing.T) {
	h := newHarness(t, Config{StalenessBound: time.Second})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	h.clock.add(2 * time.Second)
	if _, _, bypass := h.m.Get(context.Background(), q); bypass != BypassStale {
		t.Fatalf("bypass = %q, want %q", bypass, BypassStale)
	}
	h.apply() // a fresh marker
	if _, ok := h.hit(q); !ok {
		t.Fatal("not served after the lag recovered")
	}
}

func TestNoWatermarkNoCache(t *testing.T) {
	m, err := New(Config{Catalog: testCatalog})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res := m.Analyze(analyze.Input{SQL: "SELECT 1", Session: analyze.SessionKnown})
	if _, _, bypass := m.Get(context.Background(), &Query{Key: []byte("k"), Analysis: res}); bypass != BypassNoWatermark {
		t.Fatalf("bypass = %q", bypass)
	}
}

func TestReadYourWritesFence(t *testing.T) {
	h := newHarness(t, Config{FenceWait: 20 * time.Millisecond})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	q.Fence = schemas.Position{LSN: h.lsn + 50}
	if _, _, bypass := h.m.Get(context.Background(), q); bypass != BypassFence {
		t.Fatalf("bypass = %q, want %q", bypass, BypassFence)
	}
	go func() {
		time.Sleep(2 * time.Millisecond)
		h.apply()
	}()
	if _, ok := h.hit(q); !ok {
		t.Fatal("not served once the watermark passed the fence")
	}
}

func TestSingleFlight(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = 1")
	_, tk, _ := h.m.Get(context.Background(), q)
	got := make(chan string)
	go func() {
		r, _ := h.hit(q)
		got <- r
	}()
	time.Sleep(5 * time.Millisecond)
	h.m.Put(tk, []byte("filled"))
	if r := <-got; r != "filled" {
		t.Fatalf("follower got %q", r)
	}
	if s := h.m.Stats(); s.Misses != 1 || s.Coalesced != 1 {
		t.Fatalf("misses %d coalesced %d, want 1 and 1", s.Misses, s.Coalesced)
	}
}

func TestAbandonReleasesFollowers(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = 1")
	_, tk, _ := h.m.Get(context.Background(), q)
	done := make(chan string)
	go func() {
		_, _, bypass := h.m.Get(context.Background(), q)
		done <- bypass
	}()
	time.Sleep(5 * time.Millisecond)
	h.m.Abandon(tk)
	if b := <-done; b != BypassFlightFailed {
		t.Fatalf("follower bypass = %q", b)
	}
	if !h.fill(q, "r") {
		t.Fatal("a later fill was refused")
	}
}

func TestEvictionUnregisters(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 64 << 10})
	for i := range 2000 {
		q := h.query("SELECT v FROM t WHERE id = $1", strconv.Itoa(i))
		_, tk, bypass := h.m.Get(context.Background(), q)
		if tk == nil {
			continue
		}
		_ = bypass
		h.m.Put(tk, make([]byte, 1000))
	}
	h.m.store.Wait()
	if n := h.m.ix.registered(); n > 64 {
		t.Fatalf("%d entries registered in a 64 KiB cache of 1 KB entries", n)
	}
}

func TestUnpublishedTableIsNotCached(t *testing.T) {
	cat := PublishedOnly(testCatalog, []string{"public.u"})
	if res := analyze.Analyze(analyze.Input{SQL: "SELECT v FROM t WHERE id = 1", Session: analyze.SessionKnown}, cat); res.Cacheable || res.Reason != analyze.ReasonNotReplicated {
		t.Fatalf("unpublished t: cacheable %v reason %q", res.Cacheable, res.Reason)
	}
	if res := analyze.Analyze(analyze.Input{SQL: "SELECT id FROM u WHERE id = 1", Session: analyze.SessionKnown}, cat); !res.Cacheable {
		t.Fatalf("published u: %s %s", res.Reason, res.Detail)
	}
}

func TestLookupFromRequest(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Session: analyze.SessionKnown,
		Params: Params{Values: [][]byte{[]byte("5")}}}
	a, key := h.m.Lookup(ctx, r, nil)
	if a.Ticket == nil {
		t.Fatalf("want a miss, got %+v", a)
	}
	h.m.Put(a.Ticket, []byte("resp"))
	if a, _ = h.m.Lookup(ctx, r, key); a.Entry == nil || string(a.Entry.Response()) != "resp" {
		t.Fatalf("want a hit, got %+v", a)
	}
	other := *r
	other.Role = "bob"
	if a, _ = h.m.Lookup(ctx, &other, nil); a.Entry != nil {
		t.Fatal("another role was served alice's result")
	}
	h.m.Abandon(a.Ticket)
	for _, c := range []struct {
		name   string
		mutate func(*Request)
		reason string
	}{
		{"read-write transaction", func(r *Request) { r.Tx = analyze.TxReadWrite }, string(analyze.ReasonReadWriteTx)},
		{"unknown session", func(r *Request) { r.Session = analyze.SessionUnknown }, string(analyze.ReasonSessionState)},
		{"volatile", func(r *Request) { r.SQL = "SELECT random()" }, ""},
		{"clock parameter", func(r *Request) { r.Params.Values = [][]byte{[]byte("now")} }, BypassTimeLiteral},
	} {
		t.Run(c.name, func(t *testing.T) {
			rr := *r
			c.mutate(&rr)
			a, _ := h.m.Lookup(ctx, &rr, nil)
			if a.Entry != nil || a.Ticket != nil || (c.reason != "" && a.Reason != c.reason) {
				t.Fatalf("got %+v, want bypass %q", a, c.reason)
			}
		})
	}
	if allocs := testing.AllocsPerRun(100, func() { a, key = h.m.Lookup(ctx, r, key) }); allocs > 1 {
		t.Errorf("a hit allocates %.0f times", allocs)
	}
}

type fixedPosition struct{ p schemas.Position }

func (f *fixedPosition) CurrentPosition(context.Context) (schemas.Position, error) { return f.p, nil }

func TestLookupResolvesPendingFence(t *testing.T) {
	pos := &fixedPosition{}
	h := newHarness(t, Config{Positions: pos, FenceWait: time.Millisecond})
	ctx := context.Background()
	r := &Request{SQL: "SELECT v FROM t WHERE id = 1", Session: analyze.SessionKnown}
	a, key := h.m.Lookup(ctx, r, nil)
	h.m.Put(a.Ticket, []byte("r"))
	pos.p = schemas.Position{LSN: h.lsn + 10} // the session's write
	r.FencePending = true
	if a, key = h.m.Lookup(ctx, r, key); a.Reason != BypassFence || r.FencePending || r.Fence != pos.p {
		t.Fatalf("answer %+v, pending %v fence %v", a, r.FencePending, r.Fence)
	}
	h.apply() // the watermark passes the write
	if a, _ = h.m.Lookup(ctx, r, key); a.Entry == nil || !r.Fence.IsZero() {
		t.Fatalf("answer %+v fence %v", a, r.Fence)
	}
}

func TestMetricsOnRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, Config{Registerer: reg})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	h.hit(q)
	got, err := testutil.GatherAndCount(reg, "freshet_cache_lookups_total", "freshet_cache_fills_total")
	if err != nil {
		t.Fatal(err)
	}
	if got != 4 { // lookups{hit,miss,bypass}, fills{admitted}
		t.Fatalf("%d series, want 4", got)
	}
	if v := testutil.ToFloat64(h.m.metrics.hits); v != 1 {
		t.Fatalf("hits = %v", v)
	}
}

func TestTemplateCounters(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	lookup := func(sql string) Answer {
		a, _ := h.m.Lookup(ctx, &Request{SQL: sql, Session: analyze.SessionKnown}, nil)
		if a.Ticket != nil {
			h.m.Put(a.Ticket, []byte("r"))
		}
		return a
	}
	lookup("SELECT v FROM t WHERE id = 1")
	lookup("SELECT v FROM t WHERE id = 2") // same template, another key
	lookup("SELECT v FROM t WHERE id = 1")
	lookup("SELECT random()")
	var point, random TemplateStats
	for _, s := range h.m.Templates() {
		switch {
		case s.Hits+s.Misses == 3:
			point = s
		case s.Bypassed == 1:
			random = s
		}
	}
	if point.Hits != 1 || point.Misses != 2 {
		t.Errorf("point template: %+v", point)
	}
	if random.Reason == "" {
		t.Errorf("random(): %+v", random)
	}
	qs := h.m.Queries()
	want := []QueryStats{
		{Query: "SELECT v FROM t WHERE id = $1", Hits: 1, Misses: 2, HitRatio: 1.0 / 3},
		{Query: "SELECT random()", Bypassed: 1, Reason: random.Reason},
	}
	if len(qs) != len(want) {
		t.Fatalf("Queries() = %+v, want %d templates", qs, len(want))
	}
	for i, w := range want {
		w.Template = qs[i].Template
		if qs[i] != w || len(w.Template) < 8 {
			t.Errorf("Queries()[%d] = %+v, want %+v (most read first; constants never shown)", i, qs[i], w)
		}
	}
}

func TestEntrySet(t *testing.T) {
	var s entrySet
	var es []*cache.Entry
	for i := range 3 * entrySetSmall {
		e := cache.NewEntry([]byte{byte(i)}, nil, nil)
		es = append(es, e)
		s.add(e)
		s.add(e) // idempotent
		if s.len() != i+1 {
			t.Fatalf("after %d adds: len %d", i+1, s.len())
		}
	}
	for _, e := range es[:entrySetSmall] {
		s.remove(e)
	}
	if s.len() != 2*entrySetSmall {
		t.Fatalf("len %d after removals", s.len())
	}
	got := s.takeAll(nil)
	if len(got) != 2*entrySetSmall || s.len() != 0 {
		t.Fatalf("takeAll: %d entries, %d left", len(got), s.len())
	}
	var small entrySet
	small.add(es[0])
	small.add(es[1])
	small.remove(es[0])
	if got := small.takeAll(nil); len(got) != 1 || got[0] != es[1] {
		t.Fatalf("small set: %v", got)
	}
}

type fixedRoleDefaults struct{ d RoleDefaults }

func (f fixedRoleDefaults) LoadRoleDefaults(context.Context) (RoleDefaults, error) { return f.d, nil }

func TestRoleDefaultsMakeSessionsUnknown(t *testing.T) {
	h := newHarness(t, Config{Loader: &swapLoader{cat: testCatalog}, RoleDefaults: fixedRoleDefaults{RoleDefaults{
		Roles: map[string]bool{"app": true}, Pairs: map[[2]string]bool{{"db2", "bob"}: true},
	}}})
	if err := h.m.LoadCatalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		db, role string
		cached   bool
	}{{"db1", "app", false}, {"db2", "bob", false}, {"db1", "bob", true}, {"db2", "alice", true}} {
		a, _ := h.m.Lookup(context.Background(), &Request{Database: c.db, Role: c.role, SQL: "SELECT v FROM t WHERE id = 1", Session: analyze.SessionKnown}, nil)
		h.m.Abandon(a.Ticket)
		if (a.Ticket != nil) != c.cached {
			t.Errorf("%s/%s: answer %+v, want cacheable %v", c.db, c.role, a, c.cached)
		}
	}
	if !UnseenSetting("Search_Path=app, public") || UnseenSetting("work_mem=64MB") {
		t.Error("UnseenSetting")
	}
}

type swapLoader struct {
	mu  sync.Mutex
	cat analyze.Catalog
}

func (l *swapLoader) LoadCatalog(context.Context) (analyze.Catalog, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cat, nil
}

func TestPeriodicCatalogReloadPurgesOnChange(t *testing.T) {
	loader := &swapLoader{cat: testCatalog}
	h := newHarness(t, Config{Loader: loader})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	h.m.checkCatalog(context.Background())
	if _, ok := h.hit(q); !ok {
		t.Fatal("an unchanged catalog purged the cache")
	}
	loader.mu.Lock()
	loader.cat = analyze.NewSnapshot(analyze.SnapshotData{Schemas: []string{"public"}}) // t dropped
	loader.mu.Unlock()
	h.m.checkCatalog(context.Background())
	h.m.store.Wait()
	if _, ok := h.hit(q); ok {
		t.Fatal("served after the catalog changed")
	}
	if res := h.m.Analyze(analyze.Input{SQL: "SELECT v FROM t WHERE id = 1", Session: analyze.SessionKnown}); res.Cacheable {
		t.Fatal("still analyzed against the old catalog")
	}
	if s := h.m.Stats(); s.CatalogPurges+s.CatalogScoped != 1 {
		t.Fatalf("purges = %d, scoped %d", s.CatalogPurges, s.CatalogScoped)
	}
}

func (l *swapLoader) set(d analyze.SnapshotData) {
	l.mu.Lock()
	l.cat = analyze.NewSnapshot(d)
	l.mu.Unlock()
}

// TestCatalogChangeOfOtherRelationsKeepsEntries: a periodic reload that
// finds only relations changed (another application's temporary table,
// a table created elsewhere) keeps every entry that did not look their
// names up, with its statement's ID (parameterized statements are keyed
// by it); a changed table takes what read it; a changed function takes
// everything.
func TestCatalogChangeOfOtherRelationsKeepsEntries(t *testing.T) {
	loader := &swapLoader{cat: testCatalog}
	reg := prometheus.NewRegistry()
	h := newHarness(t, Config{Loader: loader, Registerer: reg})
	ctx := context.Background()
	read := func(sql string) bool {
		t.Helper()
		r := &Request{Database: "db", Role: "alice", SQL: sql, Session: analyze.SessionKnown,
			Params: Params{Values: [][]byte{[]byte("1")}}}
		a, _ := h.m.Lookup(ctx, r, nil)
		if a.Ticket != nil {
			h.m.Put(a.Ticket, []byte("r"))
			h.m.store.Wait()
		}
		return a.Entry != nil
	}
	qt, qu := "SELECT v FROM t WHERE id = $1", "SELECT t_id FROM u WHERE id = $1"
	read(qt)
	read(qu)
	if !read(qt) || !read(qu) {
		t.Fatal("not cached to begin with")
	}
	tbl := func(name string, cols ...string) analyze.Relation {
		r := analyze.Relation{Schema: "public", Name: name, Kind: analyze.KindTable}
		for _, c := range cols {
			r.Columns = append(r.Columns, analyze.Column{Name: c, Type: "int4"})
		}
		return r
	}
	base := []analyze.Relation{
		{Schema: "public", Name: "t", Kind: analyze.KindTable, Columns: []analyze.Column{
			{Name: "id", Type: "int4"}, {Name: "v", Type: "int4"}, {Name: "name", Type: "text"}}},
		tbl("u", "id", "t_id"),
	}
	others := append(slices.Clone(base), tbl("x", "id"),
		analyze.Relation{Schema: "pg_temp_3", Name: "scratch", Kind: analyze.KindTable, Temporary: true})
	loader.set(analyze.SnapshotData{Schemas: []string{"public"}, Relations: others})
	h.m.checkCatalog(ctx)
	h.m.store.Wait()
	if !read(qt) || !read(qu) {
		t.Fatal("a change to other relations dropped entries")
	}
	changedT := slices.Clone(others)
	changedT[0].Columns = append(slices.Clone(changedT[0].Columns), analyze.Column{Name: "w", Type: "int4"})
	loader.set(analyze.SnapshotData{Schemas: []string{"public"}, Relations: changedT})
	h.m.checkCatalog(ctx)
	h.m.store.Wait()
	if read(qt) {
		t.Fatal("served a read of t after t changed")
	}
	if !read(qu) {
		t.Fatal("a change to t dropped a read of u")
	}
	// alice.u comes first on alice's search_path ("$user", public): it
	// shadows public.u for an unqualified u.
	shadowU := append(slices.Clone(changedT), analyze.Relation{Schema: "alice", Name: "u", Kind: analyze.KindTable,
		Columns: []analyze.Column{{Name: "id", Type: "int4"}, {Name: "t_id", Type: "int4"}}})
	loader.set(analyze.SnapshotData{Schemas: []string{"public"}, Relations: shadowU})
	h.m.checkCatalog(ctx)
	h.m.store.Wait()
	if read(qu) {
		t.Fatal("served public.u's result after alice.u came to shadow it")
	}
	if res := h.m.Analyze(analyze.Input{SQL: qu, Role: "alice", Session: analyze.SessionKnown}); len(res.Tables) != 1 || res.Tables[0] != "alice.u" {
		t.Fatalf("re-analysis resolved %v, want alice.u", res.Tables)
	}
	if s := h.m.Stats(); s.CatalogScoped != 3 || s.CatalogPurges != 0 {
		t.Fatalf("scoped %d, purges %d; want 3 and 0", s.CatalogScoped, s.CatalogPurges)
	}
	loader.set(analyze.SnapshotData{Schemas: []string{"public"}, Relations: shadowU,
		Functions: []analyze.Function{{Schema: "public", Name: "f", Volatility: analyze.Immutable}}})
	h.m.checkCatalog(ctx)
	h.m.store.Wait()
	if read(qu) {
		t.Fatal("served after a function changed")
	}
	if s := h.m.Stats(); s.CatalogPurges != 1 {
		t.Fatalf("purges %d, want 1", s.CatalogPurges)
	}
	if s, p := testutil.ToFloat64(h.m.metrics.catalog.WithLabelValues("scoped")),
		testutil.ToFloat64(h.m.metrics.catalog.WithLabelValues("purge")); s != 3 || p != 1 {
		t.Fatalf("freshet_catalog_changes_total scoped %v purge %v, want 3 and 1", s, p)
	}
}

type failingLoader struct{}

func (failingLoader) LoadCatalog(context.Context) (analyze.Catalog, error) {
	return nil, errors.New("origin unreachable")
}

// TestCatalogChangeInStreamReloads: a catalog change in the stream (the
// origin's DDL event trigger) reloads the catalog before the batch's
// marker moves the watermark: an unchanged catalog keeps the cache, a
// changed one drops what it affects at once, and a reload that fails stops
// caching.
func TestCatalogChangeInStreamReloads(t *testing.T) {
	loader := &swapLoader{cat: testCatalog}
	h := newHarness(t, Config{Loader: loader})
	q := h.query("SELECT v FROM t WHERE id = 1")
	h.fill(q, "r")
	h.apply(schemas.Change{Op: schemas.OpCatalogChange})
	if _, ok := h.hit(q); !ok {
		t.Fatal("a catalog change that changed nothing dropped the entry")
	}
	loader.set(analyze.SnapshotData{Schemas: []string{"public"}}) // t dropped
	var servedAtAdvance bool
	h.m.cfg.Hooks.BeforeAdvance = func(*ingest.Batch) { _, servedAtAdvance = h.hit(q) }
	h.apply(schemas.Change{Op: schemas.OpCatalogChange})
	h.m.cfg.Hooks.BeforeAdvance = nil
	if servedAtAdvance {
		t.Fatal("the entry was still served when the watermark passed the catalog change")
	}
	if s := h.m.Stats(); s.CatalogFollowed != 2 {
		t.Fatalf("CatalogFollowed = %d, want 2", s.CatalogFollowed)
	}

	f := newHarness(t, Config{Loader: failingLoader{}})
	f.apply(schemas.Change{Op: schemas.OpCatalogChange})
	if _, _, bypass := f.m.Get(context.Background(), q); bypass != BypassReload {
		t.Fatalf("after a failed reload: bypass = %q, want %q", bypass, BypassReload)
	}
}
