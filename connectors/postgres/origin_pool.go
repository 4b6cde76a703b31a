package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
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
}

// OriginPool keeps reset origin backends for reuse by later sessions of
// the same user, database and startup parameters (session mode with
// reuse). It is safe for concurrent use.
type OriginPool struct {
	cfg   PoolConfig
	query []byte

	mu     sync.Mutex
	idle   map[string][]idleConn
	closed bool
}

type idleConn struct {
	oc    *pgwire.OriginConn
	since time.Time
}

var _ pgwire.Pool = (*OriginPool)(nil)

// NewOriginPool validates cfg and returns an empty pool.
func NewOriginPool(cfg PoolConfig) (*OriginPool, error) {
	if cfg.MaxIdlePerKey < 0 || cfg.IdleTimeout < 0 || cfg.ResetTimeout < 0 {
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
	q := appendMessage(nil, 'Q', append([]byte(cfg.ResetQuery), 0))
	return &OriginPool{cfg: cfg, query: q, idle: make(map[string][]idleConn)}, nil
}

// Acquire takes the most recently released live backend for key.
func (p *OriginPool) Acquire(_ context.Context, key string) *pgwire.OriginConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(ic.since) < p.cfg.IdleTimeout && (p.cfg.HostFits == nil || p.cfg.HostFits(ic.oc.Key.Host)) {
			p.idle[key] = list
			return ic.oc
		}
		_ = ic.oc.Conn.Close()
	}
	delete(p.idle, key)
	return nil
}

// Release keeps oc, after a reset when asked, or closes it when the
// reset fails or the pool is full.
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
	if p.closed || len(p.idle[key]) >= p.cfg.MaxIdlePerKey {
		_ = oc.Conn.Close()
		return
	}
	p.idle[key] = append(p.idle[key], idleConn{oc: oc, since: time.Now()})
}

// Idle is the number of backends the pool holds.
func (p *OriginPool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close closes every idle backend; later releases close theirs.
func (p *OriginPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, l := range p.idle {
		for _, ic := range l {
			_ = ic.oc.Conn.Close()
		}
		delete(p.idle, k)
	}
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
