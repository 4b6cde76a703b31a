package ingestnode

import (
	"context"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

// setup creates the publication and slot, trying again while the origin
// is unreachable or not accepting connections yet (an ingest started
// with, or before, its database). An error retrying cannot cure, such as
// a refused password or wal_level below logical, is returned at once.
// A nil report with a nil error means ctx ended.
func (n *Node) setup(ctx context.Context, pcfg postgres.Config) (*postgres.SetupReport, error) {
	backoff := n.cfg.MinBackoff
	for {
		report, err := postgres.Setup(ctx, pcfg, schemas.Position{})
		switch {
		case err == nil:
			n.lastErr.Store(nil)
			return report, nil
		case ctx.Err() != nil:
			return nil, nil
		case !transientSetupError(err):
			return nil, err
		}
		n.setupRetries.Add(1)
		msg := "setup: " + err.Error()
		n.lastErr.Store(&msg)
		n.log.Warn("cannot set up the source yet; trying again", "err", err, "in", backoff)
		if !n.pause(ctx, &backoff) {
			return nil, nil
		}
	}
}

// transientSetupError reports an error that waiting may cure: the origin
// unreachable, starting up, shutting down or out of connections.
func transientSetupError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300", "53400":
			return true
		}
		return pgErr.Code[:2] == "08"
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded)
}
