package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

// PoolConfig configures an OriginPool.
type PoolConfig struct {
	// MaxIdlePerKey bounds the idle backends kept per user, database and
	// startup parameters. Default 16.
	MaxIdlePerKey int
	// IdleTimeout closes a backend idle in the pool this long. Default 5 min.
	IdleTimeout time.Duration
	// ResetQuery runs before a backend is kept. Default "DISCARD ALL".
	ResetQuery string
	// ResetTimeout bounds the reset; a backend that overruns is closed.
	// Default 5 s.
	ResetTimeout time.Duration
	// HostFits, when set, is asked before an idle backend is lent
	// whether its host (BackendKey.Host) may still serve
	// (Origin.Fits); a backend whose host may not is closed.
	HostFits func(host string) bool
	// MaxOpen bounds the backends the pool has open, lent or idle,
	// under all keys together (PgBouncer's max_db_connections); 0: no
	// bound. A session that needs one more waits, first come first
	// served; an idle backend kept under another key is closed to make
	// room.
	MaxOpen int
	// MaxLifetime closes a backend open this long when it is next
	// released or found idle (PgBouncer's server_lifetime), so that
	// backends do not grow old on the origin; one that is lent is never
	// cut off. 0: no limit.
	MaxLifetime time.Duration
	// WaitTimeout bounds that wait (PgBouncer's query_wait_timeout);
	// Acquire then fails with pgwire.ErrPoolTimeout. Default 2 min.
	WaitTimeout time.Duration
	// OnWait, when set, is told how long each wait for a backend took
	// and whether it got one.
	OnWait func(waited time.Duration, got bool)
}

// OriginPool keeps reset origin backends for reuse by later sessions of
// the same user, database and startup parameters (session mode with
// reuse). It is safe for concurrent use.
type OriginPool struct {
	cfg   PoolConfig
	query []byte

	mu     sync.Mutex
	idle   map[string][]idleConn
	open   int           // backends open: lent, idle or being dialled
	queue  []*poolWaiter // sessions waiting for room, oldest first
	closed bool

	ended atomic.Int64 // idle backends found ended when lent
}

type idleConn struct {
	oc    *pgwire.OriginConn
	since time.Time
}

var _ pgwire.Pool = (*OriginPool)(nil)

// NewOriginPool validates cfg and returns an empty pool.
func NewOriginPool(cfg PoolConfig) (*OriginPool, error) {
	if cfg.MaxIdlePerKey < 0 || cfg.IdleTimeout < 0 || cfg.ResetTimeout < 0 || cfg.MaxOpen < 0 || cfg.WaitTimeout < 0 || cfg.MaxLifetime < 0 {
		return nil, errors.New("postgres: negative value in PoolConfig")
	}
	if cfg.MaxIdlePerKey == 0 {
		cfg.MaxIdlePerKey = 16
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.ResetQuery == "" {
		cfg.ResetQuery = "DISCARD ALL"
	}
	if cfg.ResetTimeout == 0 {
		cfg.ResetTimeout = 5 * time.Second
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = 2 * time.Minute
	}
	q := appendMessage(nil, 'Q', append([]byte(cfg.ResetQuery), 0))
	return &OriginPool{cfg: cfg, query: q, idle: make(map[string][]idleConn)}, nil
}

// Acquire lends the most recently released live backend for key (one
// the origin ended while idle is closed, see ended), or
// opens one with dial when the pool has room, waiting for room when it
// has none (MaxOpen).
func (p *OriginPool) Acquire(ctx context.Context, key string, dial func() (*pgwire.OriginConn, error)) (*pgwire.OriginConn, error) {
	p.mu.Lock()
	for oc := p.takeIdle(key); oc != nil; oc = p.takeIdle(key) {
		p.mu.Unlock()
		if !ended(oc) {
			return oc, nil
		}
		p.ended.Add(1)
		_ = oc.Conn.Close() // gives its room back
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	if len(p.queue) == 0 && p.makeRoom() {
		p.open++
		p.mu.Unlock()
		return p.dial(dial)
	}
	w := p.enqueue(key)
	p.mu.Unlock()
	oc, err := p.wait(ctx, w)
	if oc != nil || err != nil {
		return oc, err
	}
	return p.dial(dial)
}

// takeIdle pops key's most recently released backend that is still
// fresh and on a host that fits, closing those that are not. Called with
// mu held.
func (p *OriginPool) takeIdle(key string) *pgwire.OriginConn {
	list := p.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(ic.since) < p.cfg.IdleTimeout && !p.tooOld(ic.oc) && (p.cfg.HostFits == nil || p.cfg.HostFits(ic.oc.Key.Host)) {
			p.idle[key] = list
			return ic.oc
		}
		p.closeLocked(ic.oc)
	}
	delete(p.idle, key)
	return nil
}

// Release keeps oc, after a reset when asked, or closes it when the
// reset fails or the pool is full. A session waiting for a backend of
// the same key gets oc at once; one waiting under another key gets its
// room.
func (p *OriginPool) Release(ctx context.Context, key string, oc *pgwire.OriginConn, reset bool) {
	if reset {
		if err := p.reset(ctx, oc); err != nil {
			_ = oc.Conn.Close()
			return
		}
		oc.State = ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.adopt(oc)
	p.keep(key, oc)
}

// keep hands a released backend to the first waiting session when it
// waits under the same key, makes room with it for one that waits under
// another (or when the backend is too old), or keeps it idle when the
// pool is not full. Called with mu held.
func (p *OriginPool) keep(key string, oc *pgwire.OriginConn) {
	switch {
	case p.closed:
		p.closeLocked(oc)
	case len(p.queue) > 0 && p.queue[0].key == key && !p.tooOld(oc):
		p.grant(oc)
	case p.tooOld(oc) || len(p.queue) > 0 || len(p.idle[key]) >= p.cfg.MaxIdlePerKey:
		p.closeLocked(oc) // its room goes to the first waiting, if any
	default:
		p.idle[key] = append(p.idle[key], idleConn{oc: oc, since: time.Now()})
	}
}

// Ended is the number of idle backends the origin had ended, found and
// closed when they were to be lent.
func (p *OriginPool) Ended() int64 { return p.ended.Load() }

// Idle is the number of idle backends the pool keeps.
func (p *OriginPool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close closes every idle backend and fails every wait; later releases
// close theirs.
func (p *OriginPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, l := range p.idle {
		for _, ic := range l {
			p.closeLocked(ic.oc)
		}
		delete(p.idle, k)
	}
	for _, w := range p.queue {
		w.ch <- grant{err: errPoolClosed}
	}
	p.queue = nil
}

// reset runs the reset query and reads up to ReadyForQuery, dropping any
// notification or notice the previous client left behind.
func (p *OriginPool) reset(ctx context.Context, oc *pgwire.OriginConn) error {
	deadline := time.Now().Add(p.cfg.ResetTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = oc.Conn.SetDeadline(deadline)
	defer func() { _ = oc.Conn.SetDeadline(time.Time{}) }()
	if _, err := oc.Conn.Write(p.query); err != nil {
		return fmt.Errorf("origin reset: %w", err)
	}
	failed := false
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(oc.Reader, hdr[:]); err != nil {
			return fmt.Errorf("origin reset: %w", err)
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
		if n < 4 || n > 1<<20 {
			return fmt.Errorf("origin reset: message length %d", n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(oc.Reader, body); err != nil {
			return fmt.Errorf("origin reset: %w", err)
		}
		switch hdr[0] {
		case 'E':
			failed = true
		case 'Z':
			if failed || len(body) != 1 || body[0] != 'I' {
				return errors.New("origin reset failed")
			}
			oc.Prepared = nil // DISCARD ALL dropped them
			return nil
		}
	}
}
