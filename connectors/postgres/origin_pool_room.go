package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

// How an OriginPool bounds its backends (PoolConfig.MaxOpen). Every
// backend it opens is wrapped in a countedConn, so that closing it,
// wherever that happens, gives its room back; a session waiting for room
// is handed either a released backend of its own key or the room to open
// one.

var errPoolClosed = errors.New("postgres: origin pool closed")

// poolWaiter is a session waiting for room. ch receives exactly one
// grant, sent by whoever removes the waiter from the queue.
type poolWaiter struct {
	key string
	ch  chan grant
}

// grant is a backend of the waiter's key, or (oc nil) room to open one,
// already counted in open, or an error.
type grant struct {
	oc  *pgwire.OriginConn
	err error
}

// countedConn is a backend the pool counts as open until it is closed.
type countedConn struct {
	net.Conn
	pool   *OriginPool
	opened time.Time
	gone   atomic.Bool
	peek   *socketPeek // nil when Conn has no socket
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.gone.CompareAndSwap(false, true) {
		c.pool.mu.Lock()
		c.pool.freeRoom()
		c.pool.mu.Unlock()
	}
	return err
}

// closeLocked is Close for the pool, which holds its mu.
func (c *countedConn) closeLocked() {
	_ = c.Conn.Close()
	if c.gone.CompareAndSwap(false, true) {
		c.pool.freeRoom()
	}
}

// Open is the number of backends the pool has open, lent or idle.
func (p *OriginPool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// Waiting is the number of sessions waiting for a backend.
func (p *OriginPool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// dial opens a backend in room already counted, giving the room back
// when the dial fails.
func (p *OriginPool) dial(dial func() (*pgwire.OriginConn, error)) (*pgwire.OriginConn, error) {
	oc, err := dial()
	if err != nil {
		p.mu.Lock()
		p.freeRoom()
		p.mu.Unlock()
		return nil, err
	}
	p.track(oc)
	return oc, nil
}

// track has the pool count oc's connection until it is closed.
func (p *OriginPool) track(oc *pgwire.OriginConn) {
	oc.Conn = &countedConn{Conn: oc.Conn, pool: p, opened: time.Now(), peek: newSocketPeek(oc.Conn)}
}

// counted is oc's connection when this pool counts it, else nil.
func (p *OriginPool) counted(oc *pgwire.OriginConn) *countedConn {
	if cc, ok := oc.Conn.(*countedConn); ok && cc.pool == p {
		return cc
	}
	return nil
}

// adopt counts a backend the pool did not open. Called with mu held.
func (p *OriginPool) adopt(oc *pgwire.OriginConn) {
	if p.counted(oc) == nil {
		p.track(oc)
		p.open++
	}
}

// tooOld reports whether oc has been open longer than MaxLifetime.
func (p *OriginPool) tooOld(oc *pgwire.OriginConn) bool {
	cc := p.counted(oc)
	return cc != nil && p.cfg.MaxLifetime > 0 && time.Since(cc.opened) >= p.cfg.MaxLifetime
}

// closeLocked closes a backend, giving its room back. Called with mu
// held.
func (p *OriginPool) closeLocked(oc *pgwire.OriginConn) {
	if cc := p.counted(oc); cc != nil {
		cc.closeLocked()
		return
	}
	_ = oc.Conn.Close()
}

// makeRoom reports whether one more backend may be opened, closing the
// longest idle backend (of another key: the caller found none of its
// own) when the pool is full. Called with mu held.
func (p *OriginPool) makeRoom() bool {
	if p.cfg.MaxOpen == 0 || p.open < p.cfg.MaxOpen {
		return true
	}
	oldest := ""
	var since time.Time
	for k, l := range p.idle {
		if len(l) > 0 && (oldest == "" || l[0].since.Before(since)) {
			oldest, since = k, l[0].since
		}
	}
	if oldest == "" {
		return false
	}
	ic := p.idle[oldest][0]
	p.idle[oldest] = p.idle[oldest][1:]
	if len(p.idle[oldest]) == 0 {
		delete(p.idle, oldest)
	}
	p.closeLocked(ic.oc) // no one waits (the caller checked): the room stays free
	return true
}

// freeRoom takes a closed backend off the count and hands its room to
// the first waiting session. Called with mu held.
func (p *OriginPool) freeRoom() {
	p.open--
	if p.closed || len(p.queue) == 0 {
		return
	}
	p.open++
	p.pop().ch <- grant{}
}

// grant hands a released backend to the first waiting session, which
// waits under the same key. Called with mu held.
func (p *OriginPool) grant(oc *pgwire.OriginConn) {
	p.pop().ch <- grant{oc: oc}
}

func (p *OriginPool) pop() *poolWaiter {
	w := p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	return w
}

// enqueue adds a waiting session. Called with mu held.
func (p *OriginPool) enqueue(key string) *poolWaiter {
	w := &poolWaiter{key: key, ch: make(chan grant, 1)}
	p.queue = append(p.queue, w)
	return w
}

// wait waits for w's grant until ctx ends, WaitTimeout passes or the
// client abandons its request (pgwire.Abandoned). It
// returns a backend, or neither a backend nor an error for room to open
// one. A grant that comes as the wait gives up is handed on.
func (p *OriginPool) wait(ctx context.Context, w *poolWaiter) (*pgwire.OriginConn, error) {
	start := time.Now()
	timer := time.NewTimer(p.cfg.WaitTimeout)
	defer timer.Stop()
	abandoned, stop := pgwire.Abandoned(ctx)
	defer stop()
	var err error
	select {
	case g := <-w.ch:
		p.waited(start, g.err == nil)
		return g.oc, g.err
	case <-abandoned:
		err = pgwire.ErrAbandoned
	case <-ctx.Done():
		err = ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: waited %s, all %d in use: %w", pgwire.ErrPoolTimeout, time.Since(start).Round(time.Millisecond), p.cfg.MaxOpen, err)
		}
	case <-timer.C:
		err = fmt.Errorf("%w: waited %s, all %d in use", pgwire.ErrPoolTimeout, p.cfg.WaitTimeout, p.cfg.MaxOpen)
	}
	p.waited(start, false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.queue {
		if q == w {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			return nil, err
		}
	}
	// Granted meanwhile: pass it on.
	switch g := <-w.ch; {
	case g.oc != nil:
		p.keep(w.key, g.oc)
	case g.err == nil:
		p.freeRoom()
	}
	return nil, err
}

func (p *OriginPool) waited(start time.Time, got bool) {
	if p.cfg.OnWait != nil {
		p.cfg.OnWait(time.Since(start), got)
	}
}
