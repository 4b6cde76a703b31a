package analyze

import pg_query "github.com/pganalyze/pg_query_go/v6"

// ReadOnlyWalk runs the read-only walk on in.SQL alone, which Analyze
// skips for what it finds cacheable.
func ReadOnlyWalk(in Input, cat Catalog) bool {
	tree, err := pg_query.Parse(in.SQL)
	if err != nil {
		return false
	}
	a := &analyzer{cat: cat, path: effectivePath(in.SearchPath, in.Role, cat), res: &Result{}}
	return a.readOnly(tree)
}
