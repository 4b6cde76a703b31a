package materialize

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

func TestRefreshLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name         string
		share, floor float64
		origin       uint64        // origin queries recorded at t0
		at           time.Duration // when the refreshes are asked for, after t0
		ask          int
		want         int
	}{
		{"floor only, no origin load", 0.1, 20, 0, 0, 50, 20},
		{"share of origin load adds to the floor", 0.1, 20, 1000, 0, 500, 120},
		{"zero floor and no load admits nothing", 0.5, 0, 0, 0, 10, 0},
		{"origin load older than a second no longer counts", 0.1, 20, 1000, 1100 * time.Millisecond, 500, 20},
		{"origin load within the second counts", 0.1, 0, 1000, 900 * time.Millisecond, 500, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &refreshLimiter{share: c.share, floor: c.floor}
			l.originQuery(t0, c.origin)
			got := 0
			for range c.ask {
				if l.allow(t0.Add(c.at)) {
					got++
				}
			}
			if got != c.want {
				t.Fatalf("admitted %d of %d, want %d", got, c.ask, c.want)
			}
		})
	}
}

func TestRefreshLimiterSlides(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &refreshLimiter{share: 0, floor: 10}
	admitted := func(at time.Duration, n int) int {
		got := 0
		for range n {
			if l.allow(t0.Add(at)) {
				got++
			}
		}
		return got
	}
	if got := admitted(0, 15); got != 10 {
		t.Fatalf("first second: %d admitted, want 10", got)
	}
	if got := admitted(500*time.Millisecond, 5); got != 0 {
		t.Fatalf("same second: %d admitted, want 0", got)
	}
	if got := admitted(1050*time.Millisecond, 15); got != 10 {
		t.Fatalf("next second: %d admitted, want 10", got)
	}
}

// fakeRefresher answers refreshes with a fixed response, optionally
// after gate is closed, and records the requests.
type fakeRefresher struct {
	mu       sync.Mutex
	requests []RefreshRequest
	response string
	err      error
	gate     chan struct{}
	started  chan struct{}
}

func (f *fakeRefresher) Refresh(ctx context.Context, r *RefreshRequest) ([]byte, error) {
	f.mu.Lock()
	f.requests = append(f.requests, *r)
	resp, err, gate, started := f.response, f.err, f.gate, f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return []byte(resp), err
}

func (f *fakeRefresher) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// refreshHarness is a harness with refresh-ahead on and its workers
// running.
func refreshHarness(t *testing.T, f *fakeRefresher, rc RefreshConfig) *harness {
	t.Helper()
	rc.Refresher = f
	h := newHarness(t, Config{Refresh: rc})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.m.runRefresh(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func pointRequest(id string) *Request {
	return &Request{Database: "app", Role: "web", SQL: "SELECT v FROM t WHERE id = $1", Shape: "BDPES",
		Params: Params{Types: []uint32{23}, Values: [][]byte{[]byte(id)}}, ResultFormats: []int16{1},
		Settings: &cache.Settings{cache.TimeZone: "UTC"}, Session: analyze.SessionKnown}
}

// read looks r up as the front end would, filling a miss with fill; it
// returns the response and whether it was a hit.
func (h *harness) read(r *Request, fill string) (string, bool) {
	h.t.Helper()
	a, _ := h.m.Lookup(context.Background(), r, nil)
	switch {
	case a.Entry != nil:
		return string(a.Entry.Response()), true
	case a.Ticket != nil:
		h.m.Put(a.Ticket, []byte(fill))
		return fill, false
	}
	h.t.Fatalf("lookup bypassed: %s", a.Reason)
	return "", false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRefreshHotEntry(t *testing.T) {
	f := &fakeRefresher{response: "new"}
	h := refreshHarness(t, f, RefreshConfig{HotHits: 3})
	hot, cold := pointRequest("5"), pointRequest("6")
	h.read(hot, "old")
	for range 3 {
		if _, hit := h.read(hot, "old"); !hit {
			t.Fatal("warm-up read missed")
		}
	}
	h.read(cold, "old6")
	h.read(cold, "old6")
	h.apply(update(5, 1, 2), update(6, 1, 2))
	waitFor(t, "the refresh", func() bool { return h.m.RefreshStats().Done == 1 })
	if got, hit := h.read(hot, "client"); !hit || got != "new" {
		t.Fatalf("after refresh: %q hit %v, want the refreshed response from the cache", got, hit)
	}
	if _, hit := h.read(cold, "old6"); hit {
		t.Fatal("a cold entry was refreshed")
	}
	if n := f.calls(); n != 1 {
		t.Fatalf("%d refreshes at the origin, want 1", n)
	}
	got := f.requests[0]
	if got.SQL != hot.SQL || got.Shape != "BDPES" || string(got.Params.Values[0]) != "5" || got.Settings[cache.TimeZone] != "UTC" || got.Role != "web" {
		t.Fatalf("refresh request %+v does not match the hot read", got)
	}
}

func TestRefreshSingleFlightWithClientMiss(t *testing.T) {
	f := &fakeRefresher{response: "new", gate: make(chan struct{}), started: make(chan struct{}, 1)}
	h := refreshHarness(t, f, RefreshConfig{HotHits: 1})
	r := pointRequest("5")
	h.read(r, "old")
	h.read(r, "old")
	h.apply(update(5, 1, 2))
	<-f.started
	got := make(chan string)
	go func() {
		a, _ := h.m.Lookup(context.Background(), pointRequest("5"), nil)
		if a.Entry == nil {
			got <- fmt.Sprintf("no entry (ticket %v, reason %q)", a.Ticket != nil, a.Reason)
			return
		}
		got <- string(a.Entry.Response())
	}()
	time.Sleep(20 * time.Millisecond) // let the client join the refresh's flight
	close(f.gate)
	if g := <-got; g != "new" {
		t.Fatalf("client miss during a refresh got %s, want the refresh's entry", g)
	}
	if s := h.m.Stats(); s.Coalesced != 1 {
		t.Fatalf("coalesced = %d, want 1", s.Coalesced)
	}
}

func TestRefreshStaleFillGuard(t *testing.T) {
	f := &fakeRefresher{response: "stale", gate: make(chan struct{}), started: make(chan struct{}, 2)}
	h := refreshHarness(t, f, RefreshConfig{HotHits: 1})
	r := pointRequest("5")
	h.read(r, "old")
	h.read(r, "old")
	h.apply(update(5, 1, 2))
	<-f.started
	h.apply(update(5, 2, 3)) // while the origin is asked
	f.mu.Lock()
	f.response = "fresh"
	f.mu.Unlock()
	close(f.gate)
	waitFor(t, "the retried refresh", func() bool { return h.m.RefreshStats().Done == 1 })
	if s := h.m.RefreshStats(); s.Refused != 1 {
		t.Fatalf("refused = %d, want 1: %+v", s.Refused, s)
	}
	if got, hit := h.read(r, "client"); !hit || got != "fresh" {
		t.Fatalf("got %q hit %v, want the retried refresh's answer", got, hit)
	}
}

func TestRefreshInvalidatedQueue(t *testing.T) {
	entry := func(key string) *cache.Entry { return cache.NewEntry([]byte(key), []byte("r"), nil) }
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		floor float64
		setup func(rf *refresher, he *hotEntry, e *cache.Entry)
		want  RefreshStats
		queue int
	}{
		{"hot entry queued", 20, nil, RefreshStats{Hot: 1}, 1},
		{"second invalidation while pending coalesced", 20, func(rf *refresher, he *hotEntry, e *cache.Entry) {
			rf.invalidated(now, []*cache.Entry{e})
		}, RefreshStats{Coalesced: 1, Hot: 1}, 1},
		{"over the rate limit dropped", 1, func(rf *refresher, he *hotEntry, e *cache.Entry) {
			rf.limit.allow(now)
		}, RefreshStats{Dropped: 1, Hot: 1}, 0},
		{"refreshed and unread: wasted, still refreshed", 20, func(rf *refresher, he *hotEntry, e *cache.Entry) {
			he.refreshed, he.mark = e, rf.heat.read(he.slot)
		}, RefreshStats{Wasted: 1, Hot: 1}, 1},
		{"refreshed and read since: not wasted", 20, func(rf *refresher, he *hotEntry, e *cache.Entry) {
			he.refreshed, he.mark = e, rf.heat.read(he.slot)
			rf.heat.hit(e.Key())
		}, RefreshStats{Hot: 1}, 1},
		{"wasted twice in a row: demoted", 20, func(rf *refresher, he *hotEntry, e *cache.Entry) {
			he.refreshed, he.mark, he.strikes = e, rf.heat.read(he.slot), 1
		}, RefreshStats{Wasted: 1, Hot: 0}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rf, err := newRefresher(RefreshConfig{Refresher: &fakeRefresher{}, Floor: c.floor}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := entry("k")
			rf.promote(e.Key(), rf.heat.slot(e.Key()), pointRequest("5"))
			cold := entry("cold")
			if c.setup != nil {
				c.setup(rf, rf.hot["k"], e)
			}
			rf.invalidated(now, []*cache.Entry{e, cold})
			if got := rf.stats(); got != c.want {
				t.Errorf("stats %+v, want %+v", got, c.want)
			}
			if len(rf.queue) != c.queue {
				t.Errorf("%d queued, want %d", len(rf.queue), c.queue)
			}
		})
	}
}

func TestRefreshHotTableBounded(t *testing.T) {
	rf, err := newRefresher(RefreshConfig{Refresher: &fakeRefresher{}, HotHits: 2, HotEntries: 4}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		key := []byte(fmt.Sprintf("key-%d", i))
		for range 2 + i%3 {
			if slot, crossed := rf.heat.hit(key); crossed {
				rf.promote(key, slot, pointRequest("1"))
			}
		}
	}
	if n := rf.hotLen(); n != 4 {
		t.Fatalf("hot table holds %d keys, want its bound 4", n)
	}
	for k, he := range rf.hot {
		if rf.heat.current(he.slot) < 4 {
			t.Errorf("%s with heat %d kept over hotter keys", k, rf.heat.current(he.slot))
		}
	}
}

func TestRefreshRoleNotMember(t *testing.T) {
	f := &fakeRefresher{err: fmt.Errorf("set role: %w", ErrRefreshRole)}
	h := refreshHarness(t, f, RefreshConfig{HotHits: 1})
	r := pointRequest("5")
	h.read(r, "old")
	h.read(r, "old")
	h.apply(update(5, 1, 2))
	waitFor(t, "the failed refresh", func() bool { return h.m.RefreshStats().Failed == 1 })
	if s := h.m.RefreshStats(); s.RoleFailures != 1 || s.Hot != 0 {
		t.Fatalf("stats %+v: want 1 role failure and the role's entries out of the hot table", s)
	}
	h.read(r, "old")
	h.read(r, "old")
	h.read(r, "old")
	if s := h.m.RefreshStats(); s.Hot != 0 {
		t.Fatalf("a role the refresh login cannot act as was made hot again: %+v", s)
	}
	if !errors.Is(f.err, ErrRefreshRole) {
		t.Fatal("fake error lost its sentinel")
	}
}

func TestRefreshOffByDefault(t *testing.T) {
	h := newHarness(t, Config{})
	r := pointRequest("5")
	h.read(r, "old")
	h.read(r, "old")
	if h.m.refresh != nil || h.m.RefreshStats() != (RefreshStats{}) {
		t.Fatal("refresh-ahead on without a Refresher")
	}
}

// TestRefreshForgetsKeyOfOldStatementID: once the analysis memo gives the
// text a new ID, reads use a new key, and a hot key under the old ID is
// dropped instead of refreshed (nothing would read its entry).
func TestRefreshForgetsKeyOfOldStatementID(t *testing.T) {
	f := &fakeRefresher{response: "new"}
	h := refreshHarness(t, f, RefreshConfig{HotHits: 1})
	r := pointRequest("5")
	h.read(r, "old")
	h.read(r, "old")
	if h.m.refresh.hotLen() != 1 {
		t.Fatalf("%d hot keys, want 1", h.m.refresh.hotLen())
	}
	old := h.m.memo.Load()
	h.m.memo.Store(&memoGen{memo: analyze.NewMemo(old.cat, 0), cat: old.cat, gen: old.gen}) // as if emptied
	h.apply(update(5, 1, 2))
	waitFor(t, "the skipped refresh", func() bool { return h.m.RefreshStats().Skipped == 1 })
	if n, hot := f.calls(), h.m.refresh.hotLen(); n != 0 || hot != 0 {
		t.Fatalf("%d refreshes at the origin and %d hot keys, want none", n, hot)
	}
	if got, hit := h.read(r, "client"); hit || got != "client" {
		t.Fatalf("read under the new ID: %q hit %v, want a miss", got, hit)
	}
}
