package ingest

import (
	"context"
	"fmt"

	"github.com/freshetdb/freshet/schemas"
)

// Transaction is one committed source transaction. Every change carries
// the transaction's commit position; Progress holds it too, with the commit
// time. A Transaction without changes is a heartbeat: the source has
// nothing left to send up to Progress.Position.
type Transaction struct {
	Changes  []schemas.Change
	Progress schemas.Progress
}

// Source reads one origin database's change stream.
//
// Stream sends committed transactions to out in commit order, starting
// after from (or after the source's own saved position when from is zero),
// until ctx ends or an error occurs. It acknowledges to the origin only
// positions covered by out.Durable().
type Source interface {
	Stream(ctx context.Context, from schemas.Position, out Emitter) error
}

// Emitter receives a Source's transactions. Implemented by Pipeline.
type Emitter interface {
	// Emit queues tx for publishing, blocking while the pipeline is full.
	Emit(ctx context.Context, tx Transaction) error
	// Durable is the highest position up to which every transaction has
	// been durably accepted by the bus: the only position a source may
	// acknowledge to its origin.
	Durable() schemas.Position
	// Idle reports whether every emitted transaction is durable, so a
	// source with no transaction open may acknowledge its origin's own
	// idle position.
	Idle() bool
}

// ResetError is returned by a Source whose history is gone (a replication
// slot dropped or invalidated, binlogs purged). The pipeline publishes the
// reset to the bus and stops; it never carries on silently.
type ResetError struct {
	Reset schemas.Reset
}

func (e *ResetError) Error() string {
	return fmt.Sprintf("source %q must be reset: %s (last known %s)", e.Reset.Source, e.Reset.Reason, e.Reset.Position)
}
