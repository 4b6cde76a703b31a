package analyze_test

import (
	"strings"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

func TestAdmit(t *testing.T) {
	tests := []struct {
		name    string
		tx      analyze.TxState
		session analyze.SessionState
		want    analyze.Reason
	}{
		{"autocommit, known session", analyze.TxNone, analyze.SessionKnown, ""},
		{"read-only transaction", analyze.TxReadOnly, analyze.SessionKnown, ""},
		{"read-write transaction", analyze.TxReadWrite, analyze.SessionKnown, analyze.ReasonReadWriteTx},
		{"snapshot transaction", analyze.TxSnapshot, analyze.SessionKnown, analyze.ReasonSnapshotTx},
		{"unknown session wins", analyze.TxNone, analyze.SessionUnknown, analyze.ReasonSessionState},
		{"zero value is refused", 0, 0, analyze.ReasonSessionState},
		{"out-of-range tx state", analyze.TxState(42), analyze.SessionKnown, analyze.ReasonSessionState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := analyze.Admit(tt.tx, tt.session)
			if got != tt.want || ok != (tt.want == "") {
				t.Fatalf("Admit = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestAnalyzeEdges(t *testing.T) {
	cat := loadCatalog(t)
	tests := []struct {
		name string
		sql  string
		want analyze.Reason
	}{
		{"NUL byte is refused, not truncated", "SELECT 1\x00; DELETE FROM users", analyze.ReasonSyntaxError},
		{"deep expression nesting", "SELECT 1" + strings.Repeat(" + 1", 900), analyze.ReasonTooComplex},
		{"deep subquery nesting", strings.Repeat("SELECT * FROM (", 600) + "SELECT 1" + strings.Repeat(") s", 600), analyze.ReasonTooComplex},
		{"moderate nesting is fine", "SELECT " + strings.Repeat("(", 50) + "1" + strings.Repeat(")", 50), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := analyze.Analyze(analyze.Input{SQL: tt.sql, Session: analyze.SessionKnown}, cat)
			if res.Reason != tt.want || res.Cacheable != (tt.want == "") {
				t.Fatalf("got cacheable=%v reason=%q (%s); want reason %q", res.Cacheable, res.Reason, res.Detail, tt.want)
			}
		})
	}
}

// TestFingerprintIsNotAKey pins down why the cache key uses the statement
// text: pg_query's fingerprint ignores constants and output column
// aliases, so statements with different response bytes share it.
func TestFingerprintIsNotAKey(t *testing.T) {
	cat := loadCatalog(t)
	for _, pair := range [][2]string{
		{"SELECT * FROM users WHERE id = 5", "SELECT * FROM users WHERE id = 6"},
		{"SELECT name AS a FROM users", "SELECT name AS b FROM users"},
	} {
		a := analyze.Analyze(analyze.Input{SQL: pair[0], Session: analyze.SessionKnown}, cat)
		b := analyze.Analyze(analyze.Input{SQL: pair[1], Session: analyze.SessionKnown}, cat)
		if a.Fingerprint == 0 || a.Fingerprint != b.Fingerprint {
			t.Fatalf("%q, %q: fingerprints %x and %x: expected equal and non-zero", pair[0], pair[1], a.Fingerprint, b.Fingerprint)
		}
	}
}

func TestReasonsAreUnique(t *testing.T) {
	seen := map[analyze.Reason]bool{}
	for _, r := range analyze.Reasons {
		if r == "" || seen[r] {
			t.Fatalf("reason %q empty or listed twice", r)
		}
		seen[r] = true
	}
}

func TestTimeDependentLiteral(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"now", true}, {" NOW ", true}, {"today", true}, {"tomorrow 10:00", true},
		{"yesterday UTC", true}, {"2024-01-01", false}, {"epoch", false},
		{"infinity", false}, {"42", false}, {"nowhere", false}, {"", false},
	}
	for _, tt := range tests {
		if got := analyze.TimeDependentLiteral(tt.in); got != tt.want {
			t.Errorf("TimeDependentLiteral(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestViewCycleIsRefused feeds a catalog no PostgreSQL would produce (a
// view defined over itself): analysis must stop, not recurse forever.
func TestViewCycleIsRefused(t *testing.T) {
	cat := analyze.NewSnapshot(analyze.SnapshotData{Relations: []analyze.Relation{
		{Schema: "public", Name: "v", Kind: analyze.KindView, Definition: "SELECT * FROM public.w"},
		{Schema: "public", Name: "w", Kind: analyze.KindView, Definition: "SELECT * FROM public.v"},
		{Schema: "public", Name: "broken", Kind: analyze.KindView, Definition: "DELETE FROM public.v"},
	}})
	for sql, want := range map[string]analyze.Reason{
		"SELECT * FROM v":      analyze.ReasonTooComplex,
		"SELECT * FROM broken": analyze.ReasonUnsupported,
	} {
		if res := analyze.Analyze(analyze.Input{SQL: sql, Session: analyze.SessionKnown}, cat); res.Reason != want {
			t.Errorf("%s: reason %q (%s), want %q", sql, res.Reason, res.Detail, want)
		}
	}
}

func TestNilCatalogIsEmpty(t *testing.T) {
	if res := analyze.Analyze(analyze.Input{SQL: "SELECT * FROM users", Session: analyze.SessionKnown}, nil); res.Reason != analyze.ReasonUnknownRelation {
		t.Fatalf("reason %q, want unknown_relation", res.Reason)
	}
	if res := analyze.Analyze(analyze.Input{SQL: "SELECT 1 + 1", Session: analyze.SessionKnown}, nil); !res.Cacheable {
		t.Fatalf("SELECT 1 + 1 with no catalog: %+v", res)
	}
}
