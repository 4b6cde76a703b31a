package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Visibility waits until committed transactions are visible to new
// snapshots at the origin. Logical decoding can deliver a commit before
// the committing backend has left the ProcArray, so for a moment a
// query can still miss a change the stream already reported; the
// materializer must not invalidate (and admit fills) before that moment
// has passed (ADR 0007). It implements materialize.Visibility.
type Visibility struct {
	DB PositionDB
	// Poll is the first pause between checks, doubled up to MaxPoll;
	// default 50µs. The wait is normally microseconds (the committing
	// backend leaving the ProcArray) and every check is an origin round
	// trip already.
	Poll time.Duration
	// MaxPoll caps the pause; default 1ms. Every moment waited past
	// visibility is added to freshness, so the cap stays short: the
	// long waits seen are a descheduled backend on a loaded origin, not
	// a slow one.
	MaxPoll time.Duration
}

// WaitVisible returns once every transaction in xids is visible to a new
// snapshot, or ctx ends.
func (v Visibility) WaitVisible(ctx context.Context, xids []uint32) error {
	poll, maxPoll := v.Poll, v.MaxPoll
	if poll <= 0 {
		poll = 50 * time.Microsecond
	}
	if maxPoll <= 0 {
		maxPoll = time.Millisecond
	}
	for {
		var s string
		if err := v.DB.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
			return fmt.Errorf("postgres: current snapshot: %w", err)
		}
		snap, err := parseSnapshot(s)
		if err != nil {
			return err
		}
		if snap.visibleAll(xids) {
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
	}
}

// snapshot is pg_snapshot: xmin:xmax:xip,... with 64-bit transaction ids.
type snapshot struct {
	xmin, xmax uint64
	xip        []uint64
}

func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("postgres: snapshot %q: want xmin:xmax:xip", s)
	}
	var snap snapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", s, err)
			}
			snap.xip = append(snap.xip, n)
		}
	}
	return snap, nil
}

// full widens a 32-bit xid to the 64-bit one nearest below xmax: the
// transaction committed, so it is older than the snapshot's horizon.
func (s snapshot) full(xid uint32) uint64 {
	f := s.xmax&^0xffffffff | uint64(xid)
	if f >= s.xmax && f >= 1<<32 {
		f -= 1 << 32
	}
	return f
}

func (s snapshot) visibleAll(xids []uint32) bool {
	for _, x := range xids {
		f := s.full(x)
		if f >= s.xmax {
			return false
		}
		for _, ip := range s.xip {
			if ip == f {
				return false
			}
		}
	}
	return true
}
