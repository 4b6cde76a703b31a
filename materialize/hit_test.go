package materialize

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// filledRequest is a point read of t whose response "resp" is cached.
func filledRequest(t *testing.T, h *harness) (*Request, []byte) {
	t.Helper()
	r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Session: analyze.SessionKnown,
		Params: Params{Values: [][]byte{[]byte("5")}}}
	a, key := h.m.Lookup(context.Background(), r, nil)
	if a.Ticket == nil {
		t.Fatalf("want a miss, got %+v", a)
	}
	if !h.m.Put(a.Ticket, []byte("resp")) {
		t.Fatal("fill refused")
	}
	return r, key
}

func TestLookupHitCountsLikeLookup(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, Config{Registerer: reg})
	r, key := filledRequest(t, h)
	e, key := h.m.LookupHit(r, key)
	if e == nil || string(e.Response()) != "resp" {
		t.Fatalf("want the cached entry, got %v", e)
	}
	if s := h.m.Stats(); s.Hits != 1 || s.Misses != 1 {
		t.Fatalf("stats %+v, want 1 hit and 1 miss", s)
	}
	if v := testutil.ToFloat64(h.m.metrics.hits); v != 1 {
		t.Fatalf("hit metric = %v", v)
	}
	var tmpl TemplateStats
	for _, s := range h.m.Templates() {
		tmpl = s
	}
	if tmpl.Hits != 1 || tmpl.Misses != 1 {
		t.Fatalf("template counters %+v", tmpl)
	}
	if allocs := testing.AllocsPerRun(100, func() { e, key = h.m.LookupHit(r, key) }); allocs != 0 || e == nil {
		t.Errorf("a hit allocates %.0f times (entry %v)", allocs, e)
	}
}

func TestLookupHitChangesNothingOnANonHit(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		mutate func(h *harness, r *Request)
	}{
		{"not cached", Config{}, func(_ *harness, r *Request) { r.Params.Values = [][]byte{[]byte("6")} }},
		{"another role", Config{}, func(_ *harness, r *Request) { r.Role = "bob" }},
		{"uncacheable statement", Config{}, func(_ *harness, r *Request) { r.SQL = "SELECT random()" }},
		{"unknown session", Config{}, func(_ *harness, r *Request) { r.Session = analyze.SessionUnknown }},
		{"read-write transaction", Config{}, func(_ *harness, r *Request) { r.Tx = analyze.TxReadWrite }},
		{"clock parameter", Config{}, func(_ *harness, r *Request) { r.Params.Values = [][]byte{[]byte("now")} }},
		{"fence pending", Config{}, func(_ *harness, r *Request) { r.FencePending = true }},
		{"fence ahead of the watermark", Config{FenceWait: time.Hour}, func(h *harness, r *Request) {
			r.Fence = schemas.Position{LSN: h.lsn + 1}
		}},
		{"beyond the staleness bound", Config{StalenessBound: time.Second}, func(h *harness, _ *Request) {
			h.clock.add(2 * time.Second)
		}},
		{"catalog reload", Config{}, func(h *harness, _ *Request) { h.m.reload.Store(true) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg)
			r, key := filledRequest(t, h)
			c.mutate(h, r)
			before, fence, pending := h.m.Stats(), r.Fence, r.FencePending
			start := time.Now()
			if e, _ := h.m.LookupHit(r, key); e != nil {
				t.Fatal("served")
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("took %v: it must not wait", d)
			}
			after := h.m.Stats()
			if after.Hits != before.Hits || after.Misses != before.Misses || len(after.Bypassed) != len(before.Bypassed) {
				t.Errorf("stats changed: %+v -> %+v", before, after)
			}
			if r.Fence != fence || r.FencePending != pending {
				t.Errorf("fence changed: %v/%v -> %v/%v", fence, pending, r.Fence, r.FencePending)
			}
		})
	}
}

func TestLookupHitPassesACoveredFence(t *testing.T) {
	h := newHarness(t, Config{})
	r, key := filledRequest(t, h)
	r.Fence = schemas.Position{LSN: h.lsn + 1}
	if e, _ := h.m.LookupHit(r, key); e != nil {
		t.Fatal("served before the watermark passed the fence")
	}
	h.apply()
	if e, _ := h.m.LookupHit(r, key); e == nil || !r.Fence.IsZero() {
		t.Fatalf("entry %v fence %v: want a hit that clears the fence", e, r.Fence)
	}
}
