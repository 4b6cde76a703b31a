package materialize

import (
	"context"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// CatalogLoader loads the origin's catalog for query analysis. The
// materializer calls it at start and after every schema change, and
// re-analyzes statements against the new catalog;
// connectors/postgres.CatalogLoader implements it.
type CatalogLoader interface {
	LoadCatalog(ctx context.Context) (analyze.Catalog, error)
}
