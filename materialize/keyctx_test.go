package materialize

import (
	"testing"

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
