package analyze_test

import (
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

func TestMayChangeSettings(t *testing.T) {
	named := analyze.NewSnapshot(analyze.SnapshotData{SettingsFunctions: []string{"to_b", "Mixed"}})
	trig := analyze.NewSnapshot(analyze.SnapshotData{SettingsFunctions: []string{"trg"}, SettingsTriggers: true})
	none := analyze.NewSnapshot(analyze.SnapshotData{})
	for _, tc := range []struct {
		name    string
		s       *analyze.Snapshot
		sql     string
		mayFire bool
		want    bool
	}{
		{"a call", named, "SELECT to_b()", false, true},
		{"qualified, upper case", named, "SELECT app.TO_B()", false, true},
		{"quoted", named, `SELECT "to_b"()`, false, true},
		{"a name loaded in mixed case", named, "CALL mixed()", true, true},
		{"in a CTE", named, "WITH x AS (SELECT to_b()) SELECT * FROM x", false, true},
		{"a longer name", named, "SELECT to_be()", false, false},
		{"other functions", named, "SELECT now(), lower(v) FROM t", false, false},
		{"a write with no trigger among them", named, "INSERT INTO t VALUES (1)", true, false},
		{"a write, with one a trigger", trig, "INSERT INTO t VALUES (1)", true, true},
		{"a read, with one a trigger", trig, "SELECT v FROM t", false, false},
		{"none", none, "SELECT to_b()", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.MayChangeSettings(tc.sql, func() bool { return tc.mayFire }); got != tc.want {
				t.Fatalf("MayChangeSettings(%q, %v) = %v, want %v", tc.sql, tc.mayFire, got, tc.want)
			}
		})
	}
	if names, triggers := named.SettingsFunctions(); len(names) != 2 || names[0] != "mixed" || triggers {
		t.Fatalf("SettingsFunctions() = %q, %v", names, triggers)
	}
}
