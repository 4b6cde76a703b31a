package analyze_test

import (
	"fmt"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

func TestMemoKeepsVerdictsApart(t *testing.T) {
	m := analyze.NewMemo(loadCatalog(t), 0)
	known := analyze.SessionKnown
	tests := []struct {
		name   string
		in     analyze.Input
		tables string
		reason analyze.Reason
	}{
		{"default path", analyze.Input{SQL: "SELECT * FROM users", Session: known}, "[public.users]", ""},
		{"same text, other search_path", analyze.Input{SQL: "SELECT * FROM users", SearchPath: []string{"app"}, Session: known}, "[app.users]", ""},
		{"same text, $user path, role alice", analyze.Input{SQL: "SELECT * FROM notes", SearchPath: []string{"$user"}, Role: "alice", Session: known}, "[alice.notes]", ""},
		{"same text, $user path, role bob", analyze.Input{SQL: "SELECT * FROM notes", SearchPath: []string{"$user"}, Role: "bob", Session: known}, "[]", analyze.ReasonUnknownRelation},
		{"memoized verdict, read-write transaction", analyze.Input{SQL: "SELECT * FROM users", Tx: analyze.TxReadWrite, Session: known}, "[]", analyze.ReasonReadWriteTx},
		{"memoized verdict, unknown session", analyze.Input{SQL: "SELECT * FROM users"}, "[]", analyze.ReasonSessionState},
		{"default path again", analyze.Input{SQL: "SELECT * FROM users", Session: known}, "[public.users]", ""},
		{"explicit empty path differs from default", analyze.Input{SQL: "SELECT * FROM users", SearchPath: []string{}, Session: known}, "[]", analyze.ReasonUnknownRelation},
	}
	for round := range 2 {
		for _, tt := range tests {
			t.Run(fmt.Sprint(round, tt.name), func(t *testing.T) {
				res := m.Analyze(tt.in)
				if res.Reason != tt.reason || fmt.Sprint(res.Tables) != tt.tables {
					t.Fatalf("reason %q tables %v; want %q %s", res.Reason, res.Tables, tt.reason, tt.tables)
				}
			})
		}
	}
}

func TestMemoIsBounded(t *testing.T) {
	m := analyze.NewMemo(loadCatalog(t), 10)
	for i := range 100 {
		sql := fmt.Sprintf("SELECT * FROM users WHERE id = %d", i)
		res := m.Analyze(analyze.Input{SQL: sql, Session: analyze.SessionKnown})
		if !res.Cacheable || res.Scans[0].Predicates[0].Values[0].Const != fmt.Sprint(i) {
			t.Fatalf("%s: %+v", sql, res)
		}
	}
}

// BenchmarkMemoHit is the per-execution cost once a statement is known.
func BenchmarkMemoHit(b *testing.B) {
	m := analyze.NewMemo(loadCatalog(b), 0)
	in := analyze.Input{SQL: "SELECT id, name FROM users WHERE id = $1", SearchPath: []string{"$user", "public"}, Role: "web", Session: analyze.SessionKnown}
	m.Analyze(in)
	b.ReportAllocs()
	for b.Loop() {
		if !m.Analyze(in).Cacheable {
			b.Fatal("not cacheable")
		}
	}
}

func TestMemoConcurrentUse(t *testing.T) {
	m := analyze.NewMemo(loadCatalog(t), 50)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 300 {
				sql := fmt.Sprintf("SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = %d", (i*7+g)%80)
				if res := m.Analyze(analyze.Input{SQL: sql, Session: analyze.SessionKnown}); !res.Cacheable || len(res.Joins) != 1 {
					t.Errorf("%s: %+v", sql, res)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}

// TestMemoStatementIDs checks what a cache key relies on when it carries
// a StatementID instead of the text: one ID per memoized (text,
// search_path, role), and an ID never given to another text, not after
// the memo is emptied, not by another memo.
func TestMemoStatementIDs(t *testing.T) {
	cat := loadCatalog(t)
	m := analyze.NewMemo(cat, 3)
	known := analyze.SessionKnown
	inputs := []analyze.Input{
		{SQL: "SELECT * FROM users", Session: known},
		{SQL: "SELECT * FROM users", SearchPath: []string{"app"}, Session: known},
		{SQL: "SELECT * FROM users", Role: "alice", Session: known},
	}
	seen := map[uint64]string{}
	ids := make([]uint64, len(inputs))
	for i, in := range inputs {
		id := m.Analyze(in).StatementID
		if id == 0 {
			t.Fatalf("input %d: no StatementID", i)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("input %d: ID %d already named %s", i, id, other)
		}
		seen[id], ids[i] = fmt.Sprint(in), id
	}
	for i, in := range inputs {
		if id := m.Analyze(in).StatementID; id != ids[i] {
			t.Fatalf("input %d memoized: ID %d, then %d", i, ids[i], id)
		}
	}
	// A fourth text empties the memo (max 3); the first text comes back
	// under a new ID, as does every text in another memo.
	if id := m.Analyze(analyze.Input{SQL: "SELECT 1", Session: known}).StatementID; seen[id] != "" {
		t.Fatalf("new text reuses ID %d", id)
	}
	again := m.Analyze(inputs[0]).StatementID
	other := analyze.NewMemo(cat, 0).Analyze(inputs[0]).StatementID
	for _, id := range []uint64{again, other} {
		if id == 0 || seen[id] != "" {
			t.Fatalf("re-analyzed text got ID %d (used before: %q)", id, seen[id])
		}
	}
	if again == other {
		t.Fatalf("two memos gave ID %d", again)
	}
}
