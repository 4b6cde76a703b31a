package kafka

import (
	"context"

	"github.com/freshetdb/freshet/schemas"
)

// EventKind says what an Event carries.
type EventKind int

// The kinds of event a Consumer delivers.
const (
	// EventChange: apply Change. Changes of one key arrive in commit order;
	// a truncate, schema change or key-moving update arrives after every
	// change before it on every partition and before any change after it.
	EventChange EventKind = iota + 1
	// EventWatermark: every transaction whose commit position is covered by
	// Watermark.Position has been delivered. Never moves backwards within
	// one Run.
	EventWatermark
	// EventReset: the source lost its history; purge everything derived
	// from Reset.Source.
	EventReset
	// EventPurge: this region lost its place in the topic (committed
	// offsets missing from the log); purge everything derived from the
	// topic's source. Delivery continues from the latest offsets.
	EventPurge
	// EventInvalid: a record could not be decoded and was skipped. Invalid
	// names its table when the record said which; with no table, the
	// record could have concerned any table of the source.
	EventInvalid
	// EventCaughtUp (DebeziumConsumer with CaughtUpInterval only): every
	// partition of every topic has been delivered up to the end the broker
	// reported just now; Watermark.CommitTime is the newest commit time of
	// the changes delivered so far (zero before the first) and
	// Watermark.Position is zero. It is not a watermark: Kafka Connect may
	// hold changes it has not produced yet (ADR 0006).
	EventCaughtUp
)

// Event is one thing a regional node's materializer must apply.
type Event struct {
	Kind      EventKind
	Change    *schemas.Change
	Watermark schemas.Progress
	Reset     *schemas.Reset
	Invalid   *DecodeError
	// Reason explains an EventPurge.
	Reason string
}

// Handler applies events. The Consumer calls Apply from one goroutine, in
// delivery order, and commits offsets only past events Apply returned nil
// for; an error stops the Consumer.
//
// This is the seam the materializer adopts: its apply loop implements
// Handler (or wraps a function in HandlerFunc).
type Handler interface {
	Apply(ctx context.Context, ev Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev Event) error

// Apply calls f.
func (f HandlerFunc) Apply(ctx context.Context, ev Event) error { return f(ctx, ev) }
