package materialize

import (
	"context"
	"strconv"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
)

// TestHashCollisionOnlyOverInvalidates forces every value onto one hash:
// the index may then invalidate and refuse more than needed, but an entry
// must never survive a change to its own value.
func TestHashCollisionOnlyOverInvalidates(t *testing.T) {
	h := newHarness(t, Config{})
	h.m.ix.hash = func(string) uint64 { return 7 }
	q5 := h.query("SELECT v FROM t WHERE id = 5")
	q6 := h.query("SELECT v FROM t WHERE id = $1", "6")
	in := h.query("SELECT v FROM t WHERE id IN (5, 6, 7)")
	for _, q := range []*Query{q5, q6, in} {
		if !h.fill(q, "r") {
			t.Fatal("fill refused")
		}
	}
	if n := h.m.ix.registered(); n != 3 {
		t.Fatalf("%d registrations, want 3 (the IN list's values share one slot)", n)
	}
	h.apply(update(6, 0, 1))
	for name, q := range map[string]*Query{"id = 5": q5, "id = 6": q6, "IN": in} {
		if _, ok := h.hit(q); ok {
			t.Errorf("%s served after a change to a value hashing like it", name)
		}
	}
	if n := h.m.ix.registered(); n != 0 {
		t.Fatalf("%d registrations left after invalidating everything", n)
	}
	// A fill in flight on a colliding value is refused.
	_, tk, _ := h.m.Get(context.Background(), q5)
	h.apply(update(8, 0, 1))
	if h.m.Put(tk, []byte("old")) {
		t.Fatal("fill admitted after a change to a value with its hash")
	}
}

// TestManyEntriesPerValue registers several entries under one value (one
// is held inline, the rest in a set) and checks that a change takes all of
// them and that eviction of some leaves the others registered.
func TestManyEntriesPerValue(t *testing.T) {
	h := newHarness(t, Config{})
	var qs []*Query
	for i := range 5 {
		q := h.query("SELECT v FROM t WHERE id = 5 AND v > " + strconv.Itoa(i))
		if !h.fill(q, "r") {
			t.Fatal("fill refused")
		}
		qs = append(qs, q)
	}
	if n := h.m.ix.registered(); n != 5 {
		t.Fatalf("%d registrations, want 5", n)
	}
	for _, q := range qs[:2] {
		e, _, _ := h.m.Get(context.Background(), q)
		if e == nil {
			t.Fatal("not cached")
		}
		h.m.ix.forget(e)
	}
	if n := h.m.ix.registered(); n != 3 {
		t.Fatalf("%d registrations after forgetting 2 of 5", n)
	}
	h.apply(update(5, 0, 1))
	for i, q := range qs[2:] {
		if _, ok := h.hit(q); ok {
			t.Errorf("entry %d served after a change to its value", i+2)
		}
	}
	if n := h.m.ix.registered(); n != 0 {
		t.Fatalf("%d registrations left", n)
	}
}

// TestVersionsOnlyWhileFillsPending checks that changes with no fill in
// flight leave no per-value state behind (memory grows with entries, not
// with the change stream), and that versions recorded for a fill in
// flight are pruned once it ended.
func TestVersionsOnlyWhileFillsPending(t *testing.T) {
	h := newHarness(t, Config{})
	q := h.query("SELECT v FROM t WHERE id = 5")
	if !h.fill(q, "r") {
		t.Fatal("fill refused")
	}
	var changes []schemas.Change
	for i := range 100 {
		changes = append(changes, update(int64(1000+i), 0, 1))
	}
	h.apply(changes...)
	if n := versions(h.m.ix); n != 0 {
		t.Fatalf("%d versions kept with no fill in flight", n)
	}
	_, tk, _ := h.m.Get(context.Background(), h.query("SELECT v FROM t WHERE id = 6"))
	h.apply(changes...)
	if n := versions(h.m.ix); n != 100 {
		t.Fatalf("%d versions with a fill in flight, want 100", n)
	}
	h.m.Abandon(tk)
	h.m.ix.prune()
	if n := versions(h.m.ix); n != 0 {
		t.Fatalf("%d versions after the fill ended and a prune", n)
	}
	if _, ok := h.hit(q); !ok {
		t.Fatal("entry on an unchanged value lost")
	}
}

func versions(ix *index) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := 0
	for _, t := range ix.tables {
		for _, c := range t.cols {
			n += len(c.versions)
		}
	}
	return n
}

// TestEntryRefsRoundTrip checks that an entry carries exactly the refs
// the index resolved for its dependencies.
func TestEntryRefsRoundTrip(t *testing.T) {
	ix := newIndex()
	deps := []cache.Dependency{{Table: "public.t", Column: "id", Value: "5"}, {Table: "public.u"}, {Table: "public.t", Column: "id", Value: "6"}}
	tok, refs := ix.begin(deps)
	e := cache.NewEntry([]byte("k"), []byte("resp"), refs)
	if !ix.end(tok, refs, e) {
		t.Fatal("not registered")
	}
	if e.NumRefs() != 3 || string(e.Response()) != "resp" || string(e.Key()) != "k" {
		t.Fatalf("entry: %d refs, response %q, key %q", e.NumRefs(), e.Response(), e.Key())
	}
	if ix.registered() != 3 {
		t.Fatalf("%d registrations, want 3", ix.registered())
	}
	ix.forget(e)
	if ix.registered() != 0 {
		t.Fatalf("%d registrations after forget", ix.registered())
	}
}
