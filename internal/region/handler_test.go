package region_test

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/region"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/schemas"
)

func change(lsn schemas.LSN) kafka.Event {
	return kafka.Event{Kind: kafka.EventChange, Change: &schemas.Change{
		Source: "origin", Schema: "public", Table: "t", Op: schemas.OpCreate, Position: schemas.Position{LSN: lsn},
		Columns: []schemas.Column{{Name: "id", Type: "int4", Key: true}}, After: []any{int64(lsn)},
	}}
}

func mark(lsn schemas.LSN) kafka.Event {
	return kafka.Event{Kind: kafka.EventWatermark, Watermark: schemas.Progress{
		Source: "origin", Position: schemas.Position{LSN: lsn}, CommitTime: time.Now()}}
}

// TestHandler feeds event sequences to a real materializer and checks
// what it applied and where its watermark stands.
func TestHandler(t *testing.T) {
	tests := []struct {
		name        string
		events      []kafka.Event
		wantChanges uint64 // applied by the materializer
		wantResets  uint64
		wantMark    schemas.LSN // 0: no watermark
		wantInvalid uint64
	}{
		{name: "changes wait for the next watermark", events: []kafka.Event{change(10), change(20)}},
		{name: "a watermark applies the held changes with it", events: []kafka.Event{change(10), change(20), mark(20)}, wantChanges: 2, wantMark: 20},
		{name: "changes after the last watermark stay held", events: []kafka.Event{change(10), mark(10), change(20)}, wantChanges: 1, wantMark: 10},
		{name: "a reset purges, forgets the watermark and drops held changes",
			events:      []kafka.Event{change(10), mark(10), change(20), {Kind: kafka.EventReset, Reset: &schemas.Reset{Source: "origin", Reason: "slot lost"}}},
			wantChanges: 1, wantResets: 1},
		{name: "a purge (lost offsets) purges and drops held changes",
			events:      []kafka.Event{change(10), mark(10), change(20), {Kind: kafka.EventPurge, Reason: "offsets lost"}, mark(30)},
			wantChanges: 1, wantResets: 1, wantMark: 30},
		{name: "an undecodable record of a known table invalidates it in its place, before the watermark",
			events:      []kafka.Event{change(10), {Kind: kafka.EventInvalid, Invalid: &kafka.DecodeError{Schema: "public", Table: "t"}}, mark(20)},
			wantChanges: 2, wantMark: 20, wantInvalid: 1},
		{name: "an undecodable record of unknown table purges at the next watermark",
			events:      []kafka.Event{change(10), mark(10), {Kind: kafka.EventInvalid, Invalid: &kafka.DecodeError{}}, change(20), mark(20)},
			wantChanges: 2, wantResets: 1, wantMark: 20, wantInvalid: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := materialize.New(materialize.Config{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			h := region.NewHandler(m, "topic", nil)
			for _, ev := range tt.events {
				if err := h.Apply(context.Background(), ev); err != nil {
					t.Fatalf("Apply(%v): %v", ev.Kind, err)
				}
			}
			s := m.Stats()
			if s.Changes != tt.wantChanges || s.Resets != tt.wantResets {
				t.Errorf("applied %d changes and %d resets, want %d and %d", s.Changes, s.Resets, tt.wantChanges, tt.wantResets)
			}
			pos, _, ok := m.Watermark()
			if ok != (tt.wantMark != 0) || pos.LSN != tt.wantMark {
				t.Errorf("watermark %s (set %v), want %d", pos, ok, tt.wantMark)
			}
			if h.Invalid() != tt.wantInvalid {
				t.Errorf("%d invalid records counted, want %d", h.Invalid(), tt.wantInvalid)
			}
		})
	}
}

// TestDebeziumHandler: a Debezium source's changes are applied as they
// arrive (nothing would release held ones), its watermark stays unset
// unless the estimate is on, and the estimate claims no commit position.
func TestDebeziumHandler(t *testing.T) {
	at := time.Now().Add(-time.Second)
	caughtUp := kafka.Event{Kind: kafka.EventCaughtUp, Watermark: schemas.Progress{CommitTime: at}}
	tests := []struct {
		name        string
		estimate    bool
		events      []kafka.Event
		wantChanges uint64
		wantResets  uint64
		wantMark    bool
		wantInvalid uint64
	}{
		{name: "changes are applied at once", events: []kafka.Event{change(10), change(20)}, wantChanges: 2},
		{name: "caught up moves no watermark by default", events: []kafka.Event{change(10), caughtUp}, wantChanges: 1},
		{name: "caught up moves the estimate when asked", estimate: true, events: []kafka.Event{change(10), caughtUp}, wantChanges: 1, wantMark: true},
		{name: "caught up before any change sets no estimate", estimate: true,
			events: []kafka.Event{{Kind: kafka.EventCaughtUp}}},
		{name: "an undecodable record invalidates its table at once",
			events:      []kafka.Event{{Kind: kafka.EventInvalid, Invalid: &kafka.DecodeError{Schema: "public", Table: "t"}}},
			wantChanges: 1, wantInvalid: 1},
		{name: "an undecodable record of unknown table purges at once",
			events:     []kafka.Event{{Kind: kafka.EventInvalid, Invalid: &kafka.DecodeError{}}},
			wantResets: 1, wantInvalid: 1},
		{name: "lost offsets purge and forget the estimate", estimate: true,
			events:      []kafka.Event{change(10), caughtUp, {Kind: kafka.EventPurge, Reason: "offsets lost"}},
			wantChanges: 1, wantResets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := materialize.New(materialize.Config{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			h := region.NewDebeziumHandler(m, "pg.public.t", tt.estimate, nil)
			for _, ev := range tt.events {
				if err := h.Apply(context.Background(), ev); err != nil {
					t.Fatalf("Apply(%v): %v", ev.Kind, err)
				}
			}
			s := m.Stats()
			if s.Changes != tt.wantChanges || s.Resets != tt.wantResets {
				t.Errorf("applied %d changes and %d resets, want %d and %d", s.Changes, s.Resets, tt.wantChanges, tt.wantResets)
			}
			pos, commit, ok := m.Watermark()
			if ok != tt.wantMark {
				t.Fatalf("watermark set %v, want %v", ok, tt.wantMark)
			}
			if ok && (pos != region.EstimatePosition || !commit.Equal(at)) {
				t.Errorf("estimate at %s, %s; want %s, %s", pos, commit, region.EstimatePosition, at)
			}
			if h.Invalid() != tt.wantInvalid {
				t.Errorf("%d invalid records counted, want %d", h.Invalid(), tt.wantInvalid)
			}
		})
	}
}
