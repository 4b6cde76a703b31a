package ingest

import (
	"context"

	"github.com/freshetdb/freshet/schemas"
)

// Batch is what the pipeline hands to a Bus: the changes of one or more
// whole transactions in commit order, then a progress marker saying every
// transaction up to Progress.Position is now in this or an earlier batch.
// A batch without changes is a marker alone (an idle source's heartbeat).
// A batch with Reset set carries nothing else: the source's history was
// lost and consumers must purge what they derived from it.
type Batch struct {
	Changes  []schemas.Change
	Progress schemas.Progress
	Reset    *schemas.Reset
}

// Bus carries batches to the materializers (Kafka, or in process).
//
// Publish takes ownership of b and must not block for long: it returns once
// the bus has accepted the batch for delivery, and calls done exactly once
// when the batch is durable (done(nil)) or cannot be made durable
// (done(err)). done may be called before Publish returns and from any
// goroutine. Batches published one after the other must become visible to
// consumers in that order. Implementations must be safe for concurrent use.
type Bus interface {
	Publish(ctx context.Context, b *Batch, done func(error)) error
}
