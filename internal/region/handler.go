package region

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// Applier is what the handler feeds: *materialize.Materializer.
type Applier interface {
	Apply(ctx context.Context, b *ingest.Batch) error
}

// Handler adapts a Kafka consumer's events to the materializer. Changes
// are held until the next watermark and applied with it as one batch:
// the materializer moves its watermark only after the batch's changes
// are invalidated, which is what a marker promises (everything up to it
// was delivered). Used from the consumer's one goroutine.
type Handler struct {
	m       Applier
	topic   string
	log     *slog.Logger
	pending []schemas.Change
	// purgeAtMark: an undecodable record of unknown table was skipped;
	// the cache is purged before the next watermark moves.
	purgeAtMark bool
	// debezium: the source has no progress markers, so changes are applied
	// as they arrive; estimate: EventCaughtUp moves the watermark to an
	// estimate (--debezium-assume-lag).
	debezium, estimate bool

	purges, invalid atomic.Uint64
}

var _ kafka.Handler = (*Handler)(nil)

// NewHandler feeds m; topic names the source in purge log lines.
func NewHandler(m Applier, topic string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{m: m, topic: topic, log: log}
}

// NewDebeziumHandler feeds m from a DebeziumConsumer, which delivers no
// watermark: each change is applied (invalidated) as it arrives, since
// nothing would ever release held changes. With estimate, EventCaughtUp
// moves the watermark to EstimatePosition at the newest change's commit
// time, so the staleness bound is checked against an estimate (ADR 0006);
// without it the watermark stays unset and every read goes to the origin.
func NewDebeziumHandler(m Applier, topics string, estimate bool, log *slog.Logger) *Handler {
	h := NewHandler(m, topics, log)
	h.debezium, h.estimate = true, estimate
	return h
}

// EstimatePosition is the watermark position of a Debezium region's
// estimate. Debezium gives no commit position that covers everything
// before it, so the estimate claims none: a read-your-writes fence (a
// real LSN) is never covered and such reads go to the origin.
var EstimatePosition = schemas.Position{LSN: 1}

// Apply implements kafka.Handler.
func (h *Handler) Apply(ctx context.Context, ev kafka.Event) error {
	if h.debezium {
		return h.applyDebezium(ctx, ev)
	}
	switch ev.Kind {
	case kafka.EventChange:
		if ev.Change != nil {
			h.pending = append(h.pending, *ev.Change)
		}
	case kafka.EventWatermark:
		return h.mark(ctx, ev.Watermark)
	case kafka.EventReset:
		h.pending, h.purgeAtMark = nil, false
		if ev.Reset != nil {
			return h.m.Apply(ctx, &ingest.Batch{Reset: ev.Reset})
		}
	case kafka.EventPurge:
		h.pending, h.purgeAtMark = nil, false
		return h.purge(ctx, ev.Reason)
	case kafka.EventInvalid:
		h.skipped(ev.Invalid)
	}
	return nil
}

// mark applies the held changes and moves the watermark.
func (h *Handler) mark(ctx context.Context, p schemas.Progress) error {
	if h.purgeAtMark {
		if err := h.purge(ctx, "an undecodable record of unknown table was skipped"); err != nil {
			return err
		}
		h.purgeAtMark = false
	}
	if err := h.m.Apply(ctx, &ingest.Batch{Changes: h.pending, Progress: p}); err != nil {
		return err // the consumer stops and commits nothing past this marker
	}
	h.pending = nil
	return nil
}

func (h *Handler) purge(ctx context.Context, reason string) error {
	h.purges.Add(1)
	return h.m.Apply(ctx, &ingest.Batch{Reset: &schemas.Reset{Source: "kafka topic " + h.topic, Reason: reason}})
}

// skipped handles a record the consumer could not decode. A change of its
// table (or, unnamed, of any table) may be lost, so whatever could depend
// on it goes — in its place in the order, before the next watermark, like
// a TRUNCATE of that table: a result filled before then may predate the
// lost change, and the watermark must not claim it.
func (h *Handler) skipped(de *kafka.DecodeError) {
	h.invalid.Add(1)
	if de == nil || de.Table == "" {
		h.log.Error("undecodable record of unknown table: the cache is purged at the next watermark", "err", de)
		h.purgeAtMark = true
		return
	}
	h.log.Error("undecodable record: its table is invalidated at the next watermark", "table", de.Schema+"."+de.Table, "err", de)
	h.pending = append(h.pending, schemas.Change{Schema: de.Schema, Table: de.Table, Op: schemas.OpTruncate})
}

// Purges counts cache purges the handler made (lost offsets, records of
// unknown table).
func (h *Handler) Purges() uint64 { return h.purges.Load() }

// Invalid counts undecodable records skipped.
func (h *Handler) Invalid() uint64 { return h.invalid.Load() }

// applyDebezium applies a Debezium source's events at once.
func (h *Handler) applyDebezium(ctx context.Context, ev kafka.Event) error {
	switch ev.Kind {
	case kafka.EventChange:
		if ev.Change != nil {
			return h.m.Apply(ctx, &ingest.Batch{Changes: []schemas.Change{*ev.Change}})
		}
	case kafka.EventCaughtUp:
		if h.estimate && !ev.Watermark.CommitTime.IsZero() {
			return h.m.Apply(ctx, &ingest.Batch{Progress: schemas.Progress{
				Source: ev.Watermark.Source, Position: EstimatePosition, CommitTime: ev.Watermark.CommitTime}})
		}
	case kafka.EventPurge:
		return h.purge(ctx, ev.Reason)
	case kafka.EventInvalid:
		h.skipped(ev.Invalid)
		if h.purgeAtMark {
			h.purgeAtMark = false
			return h.purge(ctx, "an undecodable record of unknown table was skipped")
		}
		pending := h.pending
		h.pending = nil
		return h.m.Apply(ctx, &ingest.Batch{Changes: pending})
	}
	return nil
}
