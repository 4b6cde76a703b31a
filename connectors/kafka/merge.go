package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

// seqPos orders records of one source: commit position, then the change's
// number within its transaction. A marker at X is (X, max): after every
// change of X.
type seqPos struct {
	pos schemas.Position
	seq uint32
}

func (a seqPos) after(b seqPos) bool {
	if c := a.pos.Compare(b.pos); c != 0 {
		return c > 0
	}
	return a.seq > b.seq
}

// partState is what the merge loop knows of one partition.
type partState struct {
	seen     seqPos           // the latest record delivered or dropped from here
	marker   schemas.Progress // the last progress marker read here
	commit   resumePoint      // where to resume: just after that marker
	progress bool             // a marker was read (or resumed from)
	next     int64            // the offset after the last record handled
}

// barrier is a record written to every partition, waiting for all of them.
type barrier struct {
	change  *schemas.Change
	arrived map[int]arrival
}

type arrival struct {
	release chan struct{}
	offset  int64
}

// merger is the single goroutine that turns the partitions' records into
// the handler's ordered events.
type merger struct {
	c        *Consumer
	parts    []partState
	barriers map[seqPos]*barrier
	resets   map[schemas.Reset]bool
}

func newMerger(c *Consumer, start []resumePoint) *merger {
	m := &merger{c: c, parts: make([]partState, len(start)), barriers: map[seqPos]*barrier{}, resets: map[schemas.Reset]bool{}}
	for p, rp := range start {
		st := &m.parts[p]
		st.commit, st.next = rp, rp.offset
		st.commit.next = -1
		if !rp.marker.IsZero() {
			st.marker = schemas.Progress{Position: rp.marker}
			st.seen = seqPos{rp.marker, math.MaxUint32}
			st.progress = true
		}
		if rp.next >= 0 {
			st.next, st.seen = rp.next, rp.seen
		}
	}
	return m
}

// loop merges items until ctx ends or something fails. Offsets are
// committed every CommitInterval by a goroutine of their own: a commit is
// a round trip to the group coordinator, and records arriving meanwhile
// would wait for it.
func (m *merger) loop(ctx context.Context, items <-chan item) error {
	tick := time.NewTicker(m.c.cfg.CommitInterval)
	defer tick.Stop()
	commits := make(chan []resumePoint, 1)
	committed := make(chan struct{})
	go m.committer(ctx, commits, committed)
	defer func() {
		close(commits)
		<-committed // the caller's last commit must come after these
	}()
	if err := m.advance(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			select {
			case <-commits: // not taken yet; this snapshot is newer
			default:
			}
			commits <- m.points()
		case it := <-items:
			if err := m.handle(ctx, it); err != nil {
				return err
			}
		}
	}
}

func (m *merger) handle(ctx context.Context, it item) error {
	var de *DecodeError
	switch {
	case errors.As(it.err, &de):
		m.parts[it.partition].next = it.offset + 1
		return m.malformed(ctx, de)
	case errors.Is(it.err, kafkago.OffsetOutOfRange):
		return fmt.Errorf("%w: partition %d: %v", ErrOffsetsLost, it.partition, it.err)
	case it.err != nil:
		return fmt.Errorf("kafka consumer: partition %d: %w", it.partition, it.err)
	}
	if it.release == nil {
		m.parts[it.partition].next = it.offset + 1
	}
	switch it.rec.kind {
	case kindChange:
		if it.release != nil {
			return m.arrive(ctx, it)
		}
		return m.change(ctx, it)
	case kindProgress:
		return m.marker(ctx, it)
	default:
		return m.reset(ctx, it.rec.reset)
	}
}

func (m *merger) change(ctx context.Context, it item) error {
	st := &m.parts[it.partition]
	at := seqPos{it.rec.change.Position, it.rec.change.Seq}
	if !at.after(st.seen) {
		m.c.stats.duplicates.Add(1)
		return nil
	}
	st.seen = at
	m.c.stats.changes.Add(1)
	return m.apply(ctx, Event{Kind: EventChange, Change: it.rec.change})
}

// arrive holds a record written to every partition until every partition
// has either reached it or is already past it, then delivers one copy.
func (m *merger) arrive(ctx context.Context, it item) error {
	at := seqPos{it.rec.change.Position, it.rec.change.Seq}
	if !at.after(m.parts[it.partition].seen) {
		m.c.stats.duplicates.Add(1)
		m.parts[it.partition].next = it.offset + 1
		close(it.release)
		return nil
	}
	b := m.barriers[at]
	if b == nil {
		b = &barrier{change: it.rec.change, arrived: map[int]arrival{}}
		m.barriers[at] = b
	}
	b.arrived[it.partition] = arrival{it.release, it.offset}
	return m.settle(ctx)
}

// settle delivers every barrier all partitions have reached, oldest first.
func (m *merger) settle(ctx context.Context) error {
	for len(m.barriers) > 0 {
		var next *seqPos
		for at := range m.barriers {
			if next == nil || next.after(at) {
				a := at
				next = &a
			}
		}
		b := m.barriers[*next]
		for p := range m.parts {
			if _, ok := b.arrived[p]; !ok && !m.parts[p].seen.after(*next) && *next != m.parts[p].seen {
				return nil // partition p has yet to reach it
			}
		}
		delete(m.barriers, *next)
		for p, a := range b.arrived {
			m.parts[p].seen, m.parts[p].next = *next, a.offset+1
			close(a.release)
		}
		m.c.stats.changes.Add(1)
		if err := m.apply(ctx, Event{Kind: EventChange, Change: b.change}); err != nil {
			return err
		}
	}
	return nil
}

func (m *merger) marker(ctx context.Context, it item) error {
	st := &m.parts[it.partition]
	pr := it.rec.progress
	st.commit = resumePoint{offset: it.offset + 1, marker: st.marker.Position}
	if st.progress && st.marker.Position.Covers(pr.Position) {
		m.c.stats.duplicates.Add(1)
		return nil
	}
	st.marker, st.progress = pr, true
	st.commit.marker = pr.Position
	if end := (seqPos{pr.Position, math.MaxUint32}); end.after(st.seen) {
		st.seen = end
	}
	if err := m.settle(ctx); err != nil {
		return err
	}
	return m.advance(ctx)
}

// advance delivers the watermark when the minimum over partitions moved.
func (m *merger) advance(ctx context.Context) error {
	low := m.parts[0].marker
	for _, st := range m.parts {
		if !st.progress {
			return nil
		}
		if low.Position.Covers(st.marker.Position) {
			low = st.marker
		}
	}
	if m.c.watermark.Covers(low.Position) {
		return nil
	}
	m.c.watermark = low.Position
	return m.apply(ctx, Event{Kind: EventWatermark, Watermark: low})
}

// reset is delivered at its first copy: a purge cannot wait, and any older
// change a slower partition delivers afterwards is still a real change.
func (m *merger) reset(ctx context.Context, r schemas.Reset) error {
	if m.resets[r] {
		m.c.stats.duplicates.Add(1)
		return nil
	}
	m.resets[r] = true
	m.c.log.Error("SOURCE RESET: the source lost its history; purging", "source", r.Source, "reason", r.Reason, "position", r.Position)
	return m.apply(ctx, Event{Kind: EventReset, Reset: &r})
}

func (m *merger) malformed(ctx context.Context, de *DecodeError) error {
	m.c.stats.malformed.Add(1)
	m.c.log.Error("skipping malformed record", "topic", de.Topic, "partition", de.Partition,
		"offset", de.Offset, "schema", de.Schema, "table", de.Table, "err", de.Err)
	return m.apply(ctx, Event{Kind: EventInvalid, Invalid: de})
}

// committer commits the snapshots loop sends, in order, and closes done
// when commits is closed.
func (m *merger) committer(ctx context.Context, commits <-chan []resumePoint, done chan<- struct{}) {
	defer close(done)
	for pts := range commits {
		if err := commitOffsets(ctx, m.c.client, m.c.group, m.c.cfg.Topic, pts); err != nil && ctx.Err() == nil {
			m.c.log.Warn("offset commit failed; will retry", "err", err)
		}
	}
}

func (m *merger) commit(ctx context.Context) error {
	return commitOffsets(ctx, m.c.client, m.c.group, m.c.cfg.Topic, m.points())
}

// points is where each partition resumes after a restart.
func (m *merger) points() []resumePoint {
	pts := make([]resumePoint, len(m.parts))
	for p, st := range m.parts {
		pts[p] = st.commit
	}
	return pts
}

// apply hands ev to the handler; its failure ends Run.
func (m *merger) apply(ctx context.Context, ev Event) error {
	if err := m.c.cfg.Handler.Apply(ctx, ev); err != nil {
		return &handlerError{err}
	}
	return nil
}

// resumePoints is where a new session picks up after this one.
func (m *merger) resumePoints() []resumePoint {
	pts := make([]resumePoint, len(m.parts))
	for p, st := range m.parts {
		pts[p] = st.commit
		pts[p].next, pts[p].seen = st.next, st.seen
	}
	return pts
}
