package materialize

import "context"

// WatchCatalog reloads the catalog every Config.CatalogInterval until ctx
// ends. Run does this itself; a node that feeds Apply directly (a region
// fed by Kafka) runs it beside. It returns at once without a Loader or an
// interval.
func (m *Materializer) WatchCatalog(ctx context.Context) {
	if m.cfg.Loader == nil || m.cfg.CatalogInterval <= 0 {
		return
	}
	m.watchCatalog(ctx)
}
