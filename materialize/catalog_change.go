package materialize

import (
	"reflect"
	"strings"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
)

// changedRelations is analyze.ChangedRelations through the published-only
// wrapper; false when the catalogs are of another kind or their published
// sets differ (an administrator's rare change: everything goes).
func changedRelations(old, cur analyze.Catalog) (map[string]bool, bool) {
	a, pa, ok1 := unwrapCatalog(old)
	b, pb, ok2 := unwrapCatalog(cur)
	if !ok1 || !ok2 || !reflect.DeepEqual(pa, pb) {
		return nil, false
	}
	return analyze.ChangedRelations(a, b)
}

func unwrapCatalog(c analyze.Catalog) (*analyze.Snapshot, map[string]bool, bool) {
	var published map[string]bool
	if p, ok := c.(publishedCatalog); ok {
		c, published = p.Catalog, p.published
	}
	s, ok := c.(*analyze.Snapshot)
	return s, published, ok
}

// purgeNamed invalidates every entry that depends on a table with one of
// names (unqualified; a table is matched by every suffix after a dot, so a
// dotted schema name matches more, never less), as a TRUNCATE would.
func (m *Materializer) purgeNamed(names map[string]bool) int {
	var inv Invalidation
	for _, table := range m.ix.tablesNamed(names) {
		schema, name, _ := strings.Cut(table, ".")
		m.ix.apply(&schemas.Change{Schema: schema, Table: name, Op: schemas.OpTruncate}, &inv)
	}
	for _, e := range inv.Entries {
		m.store.Remove(e)
	}
	return len(inv.Entries)
}

// tablesNamed lists the index's tables whose name is in names.
func (ix *index) tablesNamed(names map[string]bool) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []string
	for table := range ix.tables {
		for rest, ok := table, true; ok; {
			if _, rest, ok = strings.Cut(rest, "."); ok && names[rest] {
				out = append(out, table)
				break
			}
		}
	}
	return out
}
