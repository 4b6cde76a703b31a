package analyze_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// FuzzAnalyze checks that no input panics and that every verdict is
// self-consistent: a reason exactly when not cacheable, and predicates and
// joins only on scans that exist.
func FuzzAnalyze(f *testing.F) {
	for _, file := range []string{"cacheable.json", "uncacheable.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		var cases []goldenCase
		if err := json.Unmarshal(raw, &cases); err != nil {
			f.Fatal(err)
		}
		for _, c := range cases {
			f.Add(c.Query)
		}
	}
	cat := loadCatalog(f)
	f.Fuzz(func(t *testing.T, sql string) {
		res := analyze.Analyze(analyze.Input{SQL: sql, Session: analyze.SessionKnown}, cat)
		if res.Cacheable == (res.Reason != "") {
			t.Fatalf("cacheable=%v with reason %q", res.Cacheable, res.Reason)
		}
		if !res.Cacheable && (len(res.Scans) > 0 || len(res.Joins) > 0) {
			t.Fatalf("uncacheable result carries scans or joins: %+v", res)
		}
		for _, j := range res.Joins {
			if j.Left.Scan >= len(res.Scans) || j.Right.Scan >= len(res.Scans) {
				t.Fatalf("join on a missing scan: %+v", res)
			}
		}
	})
}
