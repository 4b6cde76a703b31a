package postgres

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// startHeartbeat writes a non-transactional logical message into the WAL
// every HeartbeatInterval and measures slot lag every LagInterval, on an
// ordinary connection of its own. The message reaches the stream even when
// no published table changes, so the slot's confirmed position keeps up
// with the WAL and progress markers keep flowing. Failures are logged, not
// fatal: the stream itself is what matters. It returns a func that stops
// it and waits.
func (r *Reader) startHeartbeat(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.heartbeatLoop(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}

func (r *Reader) heartbeatLoop(ctx context.Context) {
	var beat <-chan time.Time
	if r.cfg.HeartbeatInterval > 0 {
		t := time.NewTicker(r.cfg.HeartbeatInterval)
		defer t.Stop()
		beat = t.C
	}
	lag := time.NewTicker(r.cfg.LagInterval)
	defer lag.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-beat:
			conn, err = r.withConn(ctx, conn, r.emitHeartbeat)
		case <-lag.C:
			conn, err = r.withConn(ctx, conn, r.measureLag)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("heartbeat connection", "err", err)
		}
	}
}

// withConn runs f on conn, connecting first if needed; a failed conn is
// closed so the next tick reconnects.
func (r *Reader) withConn(ctx context.Context, conn *pgx.Conn, f func(context.Context, *pgx.Conn) error) (*pgx.Conn, error) {
	if conn == nil {
		var err error
		if conn, err = pgx.Connect(ctx, r.cfg.URL); err != nil {
			return nil, err
		}
	}
	if err := f(ctx, conn); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// heartbeatSQL writes a heartbeat whose content is the origin's clock, in
// microseconds since the epoch, read before the message enters the WAL:
// every commit acknowledged before that time has a lower position, so a
// marker at the heartbeat's position may claim it (and no later time).
const heartbeatSQL = `SELECT pg_logical_emit_message(false, $1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text)`

// heartbeatTime reads the time a heartbeat carries; false for one written
// in an older format, which then moves the position but not the time.
func heartbeatTime(content []byte) (time.Time, bool) {
	us, err := strconv.ParseInt(string(content), 10, 64)
	if err != nil || us <= 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(us).UTC(), true
}

func (r *Reader) emitHeartbeat(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, heartbeatSQL, HeartbeatPrefix)
	if err != nil {
		return fmt.Errorf("emit heartbeat: %w", err)
	}
	r.heartbeats.Add(1)
	return nil
}

func (r *Reader) measureLag(ctx context.Context, conn *pgx.Conn) error {
	lag, err := SlotLag(ctx, conn, r.cfg.Slot)
	if err != nil {
		return err
	}
	r.lag.Store(lag)
	if r.cfg.LagBytes != nil {
		r.cfg.LagBytes.Set(float64(lag))
	}
	if r.cfg.LagWarnBytes > 0 && lag > r.cfg.LagWarnBytes {
		r.log.Warn("replication slot lag above bound", "lag_bytes", lag, "bound_bytes", r.cfg.LagWarnBytes)
	}
	return nil
}

// Heartbeats counts the heartbeat messages written so far.
func (r *Reader) Heartbeats() int64 { return r.heartbeats.Load() }

// Lag is the slot lag in bytes at the last measurement (current WAL LSN
// minus the slot's confirmed flush LSN); -1 before the first.
func (r *Reader) Lag() int64 { return r.lag.Load() }

// SlotLag measures how far slot's confirmed flush LSN trails the current
// WAL LSN, in bytes.
func SlotLag(ctx context.Context, conn *pgx.Conn, slot string) (int64, error) {
	var lag *int64
	err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lag)
	if err != nil {
		return 0, fmt.Errorf("slot %q lag: %w", slot, err)
	}
	if lag == nil {
		return 0, fmt.Errorf("slot %q has no confirmed flush position", slot)
	}
	return *lag, nil
}
