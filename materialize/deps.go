package materialize

import (
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// Dependencies computes what a result of res executed with p depends on.
//
// A row of a table can affect the result only if it satisfies every
// predicate of some scan of that table, so one predicate per scan is
// enough: the entry registers under each of that predicate's values, and
// a change matching any of them (by its before or after image)
// invalidates it. A table with a scan that has no usable predicate is a
// table-level dependency. A predicate is usable when every value
// normalizes for the column's type; the first usable one is taken.
func Dependencies(res *analyze.Result, p *Params) []cache.Dependency {
	var deps []cache.Dependency
	whole := map[string]bool{}
	for _, sc := range res.Scans {
		if whole[sc.Table] {
			continue
		}
		d, ok := scanDependencies(sc, p)
		if !ok {
			whole[sc.Table] = true
			continue
		}
		deps = append(deps, d...)
	}
	out := deps[:0]
	seen := map[cache.Dependency]bool{}
	for _, d := range deps {
		if !whole[d.Table] && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, t := range res.Tables {
		if whole[t] || !hasScan(res, t) {
			// A table listed without a scan (never expected) is
			// depended on whole, to be safe.
			out = append(out, cache.Dependency{Table: t})
		}
	}
	return out
}

func hasScan(res *analyze.Result, table string) bool {
	for _, sc := range res.Scans {
		if sc.Table == table {
			return true
		}
	}
	return false
}

func scanDependencies(sc analyze.Scan, p *Params) ([]cache.Dependency, bool) {
	for _, pr := range sc.Predicates {
		k := kindOf(pr.Type)
		if k == kindNone {
			continue
		}
		deps := make([]cache.Dependency, 0, len(pr.Values))
		ok := true
		for _, v := range pr.Values {
			s, null, good := normalizeValue(k, v, p)
			if !good {
				ok = false
				break
			}
			if !null {
				deps = append(deps, cache.Dependency{Table: sc.Table, Column: pr.Column, Value: s})
			}
		}
		if ok && len(deps) > 0 {
			return deps, true
		}
	}
	return nil, false
}
