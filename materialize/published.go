package materialize

import (
	"context"
	"fmt"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// PublishedOnly wraps cat so that tables outside published (schema-
// qualified names, as the change stream reports them) are not
// replicated: their changes never reach the materializer, so no result
// reading them may be cached. A nil published means every table is
// published (FOR ALL TABLES).
func PublishedOnly(cat analyze.Catalog, published []string) analyze.Catalog {
	if published == nil || cat == nil {
		return cat
	}
	set := make(map[string]bool, len(published))
	for _, t := range published {
		set[t] = true
	}
	return publishedCatalog{Catalog: cat, published: set}
}

type publishedCatalog struct {
	analyze.Catalog
	published map[string]bool
}

func (c publishedCatalog) Relation(schema, name string) (*analyze.Relation, bool) {
	r, ok := c.Catalog.Relation(schema, name)
	if !ok || (r.Kind != analyze.KindTable && r.Kind != analyze.KindPartitioned) {
		return r, ok
	}
	published := c.published[r.QualifiedName()]
	for _, child := range r.Children {
		published = published && c.published[child]
	}
	if published {
		return r, ok
	}
	cp := *r
	cp.Unpublished = true
	return &cp, true
}

// PublishedLoader wraps a CatalogLoader with PublishedOnly.
type PublishedLoader struct {
	Loader CatalogLoader
	// Published is the fixed set of published tables, when Tables is nil.
	Published []string
	// Tables, when set, lists the published tables at every load, so that
	// a table added to the publication is cached after the next reload,
	// and one dropped from it is no longer cached (its changes stop
	// coming): the catalog then differs, which purges the cache.
	Tables func(ctx context.Context) ([]string, error)
}

// LoadCatalog implements CatalogLoader.
func (l PublishedLoader) LoadCatalog(ctx context.Context) (analyze.Catalog, error) {
	published := l.Published
	if l.Tables != nil {
		var err error
		if published, err = l.Tables(ctx); err != nil {
			return nil, fmt.Errorf("published tables: %w", err)
		}
		if published == nil {
			published = []string{} // none: not "every table"
		}
	}
	cat, err := l.Loader.LoadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	return PublishedOnly(cat, published), nil
}
