package materialize

import (
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// TestContextIDs checks what a key relies on when it carries a context ID
// instead of the database and settings: equal values, one ID; other
// values (even changed in place in a session's Request), another; and
// an ID never given to other values, also after the table is emptied.
func TestContextIDs(t *testing.T) {
	m := &Materializer{}
	utc := func() *cache.Settings { return &cache.Settings{cache.TimeZone: "UTC", cache.DateStyle: "ISO, MDY"} }
	a := &Request{Database: "app", Settings: utc()}
	b := &Request{Database: "app", Settings: utc()}
	idA := m.contextID(a)
	if idA == 0 || m.contextID(b) != idA || m.contextID(a) != idA {
		t.Fatalf("equal contexts: IDs %d, %d", idA, m.contextID(b))
	}
	seen := map[uint64]string{idA: "app UTC"}
	distinct := func(name string, r *Request) {
		t.Helper()
		id := m.contextID(r)
		if other, dup := seen[id]; dup || id == 0 {
			t.Fatalf("%s: ID %d, already %q", name, id, other)
		}
		seen[id] = name
	}
	distinct("other database", &Request{Database: "app2", Settings: utc()})
	distinct("no settings", &Request{Database: "app"})
	b.Settings[cache.TimeZone] = "Europe/Paris"
	distinct("settings changed in place", b)
	a.Settings = nil
	if m.contextID(a) != m.contextID(&Request{Database: "app", Settings: &cache.Settings{}}) {
		t.Fatal("nil settings and empty settings differ")
	}
	for i := range maxKeyContexts {
		m.contextID(&Request{Database: string(rune('a' + i%26)), Settings: &cache.Settings{cache.LCMonetary: string(rune(i))}})
	}
	distinct("re-interned after the table was emptied", &Request{Database: "app", Settings: utc()})
}

// TestKeysAcrossMemoChurn: when the analysis memo is emptied (a workload
// of more texts than it holds), a statement with parameters gets a new
// StatementID and so a new key, but a text without parameters (literals
// inlined, the texts that churn the memo) keeps its key and its entry.
func TestKeysAcrossMemoChurn(t *testing.T) {
	h := newHarness(t, Config{})
	literal := &Request{Database: "app", Role: "web", SQL: "SELECT v FROM t WHERE id = 5", Session: analyze.SessionKnown}
	param := pointRequest("5")
	for _, r := range []*Request{literal, param} {
		if _, hit := h.read(r, "filled"); hit {
			t.Fatal("first read hit")
		}
		if _, hit := h.read(r, "filled"); !hit {
			t.Fatal("second read missed")
		}
	}
	old := h.m.memo.Load()
	h.m.memo.Store(&memoGen{memo: analyze.NewMemo(old.cat, 0), cat: old.cat, gen: old.gen}) // as if emptied
	if got, hit := h.read(literal, "again"); !hit || got != "filled" {
		t.Fatalf("text without parameters after the memo was emptied: %q hit %v, want its entry", got, hit)
	}
	if _, hit := h.read(param, "again"); hit {
		t.Fatal("statement with parameters hit under its old StatementID")
	}
}
