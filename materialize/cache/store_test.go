package cache_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

func newStore(t testing.TB, cfg cache.Config) *cache.Store {
	t.Helper()
	s, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func key(stmt string, params ...[]byte) []byte {
	return cache.AppendKey(nil, &cache.Key{Database: "db", Role: "app", Statement: stmt, Params: params})
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []cache.Config{{}, {MaxBytes: -1}, {MaxBytes: 10, MaxEntryBytes: -1}, {MaxBytes: 10, ExpectedEntries: -5}} {
		if _, err := cache.New(cfg); err == nil {
			t.Errorf("New(%+v): want an error", cfg)
		}
	}
}

func TestSetGet(t *testing.T) {
	s := newStore(t, cache.Config{MaxBytes: 1 << 20})
	k := key("SELECT * FROM t WHERE id = $1", []byte("5"))
	resp := []byte("T...D...C...")
	refs := []cache.Ref{{Target: 3, Hash: 1<<63 | 5}, {Target: 1<<32 - 1}}
	if !s.Set(cache.NewEntry(k, resp, refs)) {
		t.Fatal("Set refused")
	}
	s.Wait()
	e, ok := s.Get(k)
	if !ok || !bytes.Equal(e.Key(), k) || !bytes.Equal(e.Response(), resp) || e.NumRefs() != len(refs) {
		t.Fatalf("Get = %+v, %v", e, ok)
	}
	for i, r := range refs {
		if got := e.Ref(i); got != r {
			t.Errorf("ref %d = %+v, want %+v", i, got, r)
		}
	}
	if r := e.Response(); cap(r) != len(r) {
		t.Errorf("response capacity %d reaches into the refs", cap(r))
	}
	if _, ok := s.Get(key("SELECT * FROM t WHERE id = $1", []byte("6"))); ok {
		t.Fatal("another parameter value hit")
	}
	if st := s.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestKeysAreDistinct lists pairs of keys that must never be equal: each
// differs in one thing that changes the response.
func TestKeysAreDistinct(t *testing.T) {
	base := func() cache.Key {
		return cache.Key{Database: "db", Role: "app", Statement: "SELECT $1", ParamTypes: []uint32{23},
			ParamFormats: []int16{0}, Params: [][]byte{[]byte("1")}, ResultFormats: []int16{0}, Settings: &cache.Settings{}}
	}
	tests := []struct {
		name   string
		change func(*cache.Key)
	}{
		{"database", func(k *cache.Key) { k.Database = "db2" }},
		{"role", func(k *cache.Key) { k.Role = "admin" }},
		{"statement", func(k *cache.Key) { k.Statement = "SELECT $1 AS x" }},
		{"parameter value", func(k *cache.Key) { k.Params = [][]byte{[]byte("2")} }},
		{"NULL vs empty parameter", func(k *cache.Key) { k.Params = [][]byte{nil} }},
		{"empty parameter vs NULL", func(k *cache.Key) { k.Params = [][]byte{{}} }},
		{"parameter type", func(k *cache.Key) { k.ParamTypes = []uint32{20} }},
		{"parameter format", func(k *cache.Key) { k.ParamFormats = []int16{1} }},
		{"result format", func(k *cache.Key) { k.ResultFormats = []int16{1} }},
		{"no result formats", func(k *cache.Key) { k.ResultFormats = nil }},
		{"TimeZone", func(k *cache.Key) { k.Settings = &cache.Settings{cache.TimeZone: "UTC"} }},
		{"search_path", func(k *cache.Key) { k.Settings = &cache.Settings{cache.SearchPath: "app"} }},
		{"field boundary shift", func(k *cache.Key) { k.Database, k.Role = "dba", "pp" }},
		{"statement ID for the text", func(k *cache.Key) { k.StatementID = 1 }},
		{"statement ID 0x80 for the text", func(k *cache.Key) { k.StatementID = 0x80 }},
		{"context ID for database and settings", func(k *cache.Key) { k.ContextID = 1 }},
		{"last setting only", func(k *cache.Key) { k.Settings = &cache.Settings{cache.LCMonetary: "C"} }},
	}
	b := base()
	want := cache.AppendKey(nil, &b)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := base()
			tt.change(&k)
			if got := cache.AppendKey(nil, &k); bytes.Equal(got, want) {
				t.Fatalf("key unchanged: %x", got)
			}
		})
	}
}

// TestHashCollisionIsAMiss forces every key onto one hash pair: the store
// must notice the full key differs instead of serving the other result.
func TestHashCollisionIsAMiss(t *testing.T) {
	s, err := cache.NewWithHash(cache.Config{MaxBytes: 1 << 20}, func([]byte) (uint64, uint64) { return 42, 43 })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k1, k2 := key("SELECT 1"), key("SELECT 2")
	s.Set(cache.NewEntry(k1, []byte("one"), nil))
	s.Wait()
	if e, ok := s.Get(k2); ok {
		t.Fatalf("collision served %q", e.Response())
	}
	if e, ok := s.Get(k1); !ok || string(e.Response()) != "one" {
		t.Fatalf("own key: %v %v", e, ok)
	}
	if st := s.Stats(); st.Collisions != 1 {
		t.Fatalf("collisions = %d, want 1", st.Collisions)
	}
}

func TestInvalidateAndRemove(t *testing.T) {
	s := newStore(t, cache.Config{MaxBytes: 1 << 20})
	k := key("SELECT 1")
	old := cache.NewEntry(k, []byte("old"), nil)
	s.Set(old)
	s.Wait()
	old.Invalidate()
	if _, ok := s.Get(k); ok {
		t.Fatal("invalidated entry served")
	}
	fresh := cache.NewEntry(k, []byte("fresh"), nil)
	s.Set(fresh)
	s.Wait()
	s.Remove(old) // late removal of the old entry must not drop the refill
	if e, ok := s.Get(k); !ok || string(e.Response()) != "fresh" {
		t.Fatalf("refill lost: %v %v", e, ok)
	}
	s.Remove(fresh)
	if _, ok := s.Get(k); ok {
		t.Fatal("removed entry served")
	}
}

func TestClearHidesEverything(t *testing.T) {
	s := newStore(t, cache.Config{MaxBytes: 1 << 20})
	var entries []*cache.Entry
	for i := range 100 {
		e := cache.NewEntry(key(fmt.Sprint("SELECT ", i)), []byte("r"), nil)
		entries = append(entries, e)
		s.Set(e)
	}
	s.Clear() // some Sets may still be in flight
	s.Wait()
	for _, e := range entries {
		if _, ok := s.Get(e.Key()); ok {
			t.Fatalf("entry %q survived Clear", e.Key())
		}
	}
}

// TestBudgetEvictsNeverErrors fills far beyond the budget: the store must
// stay within it and keep answering.
func TestBudgetEvictsNeverErrors(t *testing.T) {
	const budget = 64 << 10
	var evicted sync.Map
	s := newStore(t, cache.Config{MaxBytes: budget, OnEvict: func(e *cache.Entry) { evicted.Store(e, true) }})
	payload := bytes.Repeat([]byte("x"), 1000)
	var held int
	for i := range 2000 {
		s.Set(cache.NewEntry(key(fmt.Sprint("SELECT ", i)), payload, nil))
	}
	s.Wait()
	for i := range 2000 {
		if _, ok := s.Get(key(fmt.Sprint("SELECT ", i))); ok {
			held++
		}
	}
	perEntry := len(payload) + cache.EntryOverhead + len(key("SELECT 1000"))
	if held == 0 || held*perEntry > budget {
		t.Fatalf("%d entries of ~%d bytes held under a %d-byte budget", held, perEntry, budget)
	}
	n := 0
	evicted.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("OnEvict never called")
	}
	if s.Set(cache.NewEntry(key("big"), make([]byte, budget), nil)) {
		t.Fatal("entry larger than MaxEntryBytes accepted")
	}
	if st := s.Stats(); st.TooLarge != 1 {
		t.Fatalf("TooLarge = %d", st.TooLarge)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := newStore(t, cache.Config{MaxBytes: 1 << 20})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := key(fmt.Sprint("SELECT ", i%50))
				want := fmt.Sprint("r", i%50)
				switch (i + g) % 5 {
				case 0:
					s.Set(cache.NewEntry(k, []byte(want), nil))
				case 1:
					if e, ok := s.Get(k); ok {
						s.Remove(e)
					}
				case 2:
					if i%500 == 0 {
						s.Clear()
					}
				default:
					if e, ok := s.Get(k); ok && string(e.Response()) != want {
						t.Errorf("key %d served %q", i%50, e.Response())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestKeyStatementID checks that the ID a key carries can be read back,
// and that a key carrying the text has none.
func TestKeyStatementID(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  cache.Key
		want uint64
	}{
		{"text", cache.Key{Database: "db", Role: "app", Statement: "SELECT 1"}, 0},
		{"ID", cache.Key{Database: "db", StatementID: 7}, 7},
		{"large ID, long database", cache.Key{Database: strings.Repeat("d", 300), StatementID: 1 << 40, Params: [][]byte{[]byte("1")}}, 1 << 40},
		{"ID and settings", cache.Key{Database: "db", StatementID: 9, Settings: &cache.Settings{cache.LCMonetary: "C"}}, 9},
		{"ID and context ID", cache.Key{ContextID: 300, StatementID: 5}, 5},
		{"text and context ID", cache.Key{ContextID: 300, Role: "app", Statement: "SELECT 1"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := cache.KeyStatementID(cache.AppendKey(nil, &tt.key)); got != tt.want {
				t.Fatalf("ID %d, want %d", got, tt.want)
			}
		})
	}
	for _, bad := range [][]byte{nil, {}, {1, 2, 3}, {3, 0, 5, 'd'}, {3, 0xff}, {3, 1, 0x80}, {3, 0, 1, 'd', 9, 0}} {
		if got := cache.KeyStatementID(bad); got != 0 {
			t.Errorf("ID %d from malformed key %x", got, bad)
		}
	}
}
