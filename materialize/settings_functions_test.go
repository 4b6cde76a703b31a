package materialize

import (
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

func TestMayFireTriggers(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"INSERT INTO t VALUES (1)", true},
		{"CREATE TABLE t (i int)", true}, // an event trigger
		{"CALL p()", true},
		{"COMMIT", true}, // deferred triggers
		{"end", true},
		{"BEGIN", false},
		{"ROLLBACK", false},
		{"SELECT v FROM t WHERE id = 1", false},
		{"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", true},
		{"SET search_path = a", false},
		{"SET CONSTRAINTS ALL IMMEDIATE", true},
		{"EXECUTE ins(1)", true},
		{"SHOW search_path", false},
		{"SELECT 1; SELECT 2", true},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			if got := mayFireTriggers(Classify(tc.sql)); got != tc.want {
				t.Fatalf("mayFireTriggers(%q) = %v, want %v", tc.sql, got, tc.want)
			}
		})
	}
}

func TestMaterializerMayChangeSettings(t *testing.T) {
	cat := analyze.NewSnapshot(analyze.SnapshotData{SettingsFunctions: []string{"to_b"}, SettingsTriggers: true})
	h := newHarness(t, Config{Catalog: cat})
	for sql, want := range map[string]bool{
		"SELECT to_b()":                true,
		"SELECT v FROM t WHERE id = 1": false,
		"UPDATE t SET v = 2":           true, // fires the trigger
	} {
		if got := h.m.MayChangeSettings(Classify(sql)); got != want {
			t.Errorf("MayChangeSettings(%q) = %v, want %v", sql, got, want)
		}
	}
	if plain := newHarness(t, Config{}); plain.m.MayChangeSettings(Classify("SELECT to_b()")) {
		t.Error("a catalog without settings functions saw one")
	}
}

// BenchmarkMayChangeSettings is what the front end adds to every Parse it
// looks at (the extended protocol's hit path through the pumps) and to
// every statement it sends to the origin: with no such function at the
// origin (the common case), with some, and with a trigger among them.
func BenchmarkMayChangeSettings(b *testing.B) {
	st := Classify("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	for _, tc := range []struct {
		name string
		data analyze.SnapshotData
	}{
		{"none", analyze.SnapshotData{}},
		{"named", analyze.SnapshotData{SettingsFunctions: []string{"to_b", "set_tenant"}}},
		{"a trigger", analyze.SnapshotData{SettingsFunctions: []string{"to_b"}, SettingsTriggers: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b, Config{Catalog: analyze.NewSnapshot(tc.data)})
			b.ReportAllocs()
			for b.Loop() {
				if h.m.MayChangeSettings(st) {
					b.Fatal("a plain read may change settings")
				}
			}
		})
	}
}
