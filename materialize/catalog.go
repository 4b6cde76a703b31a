package materialize

import (
	"context"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
)

// CatalogLoader loads the origin's catalog for query analysis. The
// materializer calls it at start and after every schema change, and
// re-analyzes statements against the new catalog;
// connectors/postgres.CatalogLoader implements it.
type CatalogLoader interface {
	LoadCatalog(ctx context.Context) (analyze.Catalog, error)
}

// PositionSource reads the origin's current position; asked after a
// session's write committed, the answer covers that write (read-your-
// writes). connectors/postgres.Positions implements it.
type PositionSource interface {
	CurrentPosition(ctx context.Context) (schemas.Position, error)
}
