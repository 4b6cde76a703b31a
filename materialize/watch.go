package materialize

import (
	"context"
	"sync"
)

// Background runs the materializer's own work beside the stream of
// changes until ctx ends: the catalog reload every Config.CatalogInterval
// and the refresh-ahead workers. Run does this itself; a node that feeds
// Apply directly (a region fed by Kafka) runs it beside. It returns once
// that work has stopped, so the store may then be closed.
func (m *Materializer) Background(ctx context.Context) {
	var wg sync.WaitGroup
	if m.cfg.Loader != nil && m.cfg.CatalogInterval > 0 {
		wg.Go(func() { m.watchCatalog(ctx) })
	}
	if m.refresh != nil {
		wg.Go(func() { m.runRefresh(ctx) })
	}
	wg.Wait()
	<-ctx.Done()
}
