package analyze_test

import (
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// BenchmarkAnalyze measures one analysis (parse, fingerprint, walk), the
// cost paid once per statement text or prepared statement.
func BenchmarkAnalyze(b *testing.B) {
	cat := loadCatalog(b)
	queries := []struct{ name, sql string }{
		{"point", "SELECT id, name FROM users WHERE id = $1"},
		{"join", "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.org_id = $1 AND o.status IN ('open', 'paid') ORDER BY o.id LIMIT 20"},
		{"view_subquery", "SELECT * FROM order_totals t WHERE t.id IN (SELECT id FROM users WHERE org_id = ANY($1))"},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			in := analyze.Input{SQL: q.sql, Session: analyze.SessionKnown}
			b.ReportAllocs()
			for b.Loop() {
				if res := analyze.Analyze(in, cat); !res.Cacheable {
					b.Fatalf("not cacheable: %s %s", res.Reason, res.Detail)
				}
			}
		})
	}
}
