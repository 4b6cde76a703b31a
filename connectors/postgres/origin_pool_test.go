package postgres

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

// backends is a fake origin: it opens piped backends and counts how many
// are open at once, as the origin's max_connections would.
type backends struct {
	t    testing.TB
	mu   sync.Mutex
	fail error
	// dialled and closed count backends; live and peak are those open.
	dialled, closed, live, peak int
}

type trackedConn struct {
	net.Conn
	b    *backends
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		c.b.closed++
		c.b.live--
		c.b.mu.Unlock()
	})
	return c.Conn.Close()
}

func (b *backends) dial() (*pgwire.OriginConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	mine, theirs := net.Pipe()
	b.t.Cleanup(func() { _ = theirs.Close() })
	b.dialled++
	b.live++
	b.peak = max(b.peak, b.live)
	return &pgwire.OriginConn{Conn: &trackedConn{Conn: mine, b: b}}, nil
}

func (b *backends) counts() (dialled, live, peak int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dialled, b.live, b.peak
}

func newBoundedPool(t *testing.T, cfg PoolConfig) *OriginPool {
	t.Helper()
	p, err := NewOriginPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type acquired struct {
	oc  *pgwire.OriginConn
	err error
}

// queueUp starts an Acquire that must wait, and returns once it waits.
func queueUp(t *testing.T, p *OriginPool, key string, dial func() (*pgwire.OriginConn, error)) <-chan acquired {
	t.Helper()
	before := p.Waiting()
	ch := make(chan acquired, 1)
	go func() {
		oc, err := p.Acquire(context.Background(), key, dial)
		ch <- acquired{oc, err}
	}()
	waitFor(t, key+" to wait", func() bool { return p.Waiting() == before+1 })
	return ch
}

func mustAcquire(t *testing.T, p *OriginPool, key string, dial func() (*pgwire.OriginConn, error)) *pgwire.OriginConn {
	t.Helper()
	oc, err := p.Acquire(context.Background(), key, dial)
	if err != nil {
		t.Fatal(err)
	}
	return oc
}

func TestOriginPoolBoundsOpenBackends(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			oc, err := p.Acquire(context.Background(), "k", b.dial)
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(time.Duration(i%3) * time.Millisecond)
			p.Release(context.Background(), "k", oc, false)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Acquire: %v", err)
	}
	dialled, live, peak := b.counts()
	if peak > 3 {
		t.Errorf("%d backends open at once, want at most 3", peak)
	}
	if dialled > 3 || live != p.Open() || p.Idle() != live {
		t.Errorf("dialled %d, live %d, Open %d, Idle %d: want at most 3 dialled, all live ones idle and counted", dialled, live, p.Open(), p.Idle())
	}
}

func TestOriginPoolHandsReleasedBackendToFirstWaiting(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1})
	ctx := context.Background()
	held := mustAcquire(t, p, "k", b.dial)
	first := queueUp(t, p, "k", b.dial)
	second := queueUp(t, p, "k", b.dial)
	p.Release(ctx, "k", held, false)
	got := <-first
	if got.err != nil || got.oc != held {
		t.Fatalf("first waiting got %+v, want the released backend", got)
	}
	select {
	case g := <-second:
		t.Fatalf("second waiting got %+v while the only backend is lent", g)
	case <-time.After(20 * time.Millisecond):
	}
	p.Release(ctx, "k", got.oc, false)
	if g := <-second; g.err != nil || g.oc != held {
		t.Fatalf("second waiting got %+v, want the released backend", g)
	}
	if dialled, _, _ := b.counts(); dialled != 1 {
		t.Errorf("dialled %d backends, want 1: a released one is handed on", dialled)
	}
}

func TestOriginPoolClosedBackendMakesRoom(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1})
	held := mustAcquire(t, p, "k", b.dial)
	waiting := queueUp(t, p, "k", b.dial)
	_ = held.Conn.Close() // the session's backend broke, or the session ended dirty
	got := <-waiting
	if got.err != nil || got.oc == nil || got.oc == held {
		t.Fatalf("waiting session got %+v, want a new backend", got)
	}
	if dialled, live, _ := b.counts(); dialled != 2 || live != 1 || p.Open() != 1 {
		t.Errorf("dialled %d, live %d, Open %d; want 2, 1, 1", dialled, live, p.Open())
	}
}

func TestOriginPoolWaitTimesOut(t *testing.T) {
	b := &backends{t: t}
	var mu sync.Mutex
	var waits []bool
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1, WaitTimeout: 50 * time.Millisecond, OnWait: func(_ time.Duration, got bool) {
		mu.Lock()
		waits = append(waits, got)
		mu.Unlock()
	}})
	ctx := context.Background()
	held := mustAcquire(t, p, "k", b.dial)
	start := time.Now()
	oc, err := p.Acquire(ctx, "k", b.dial)
	if !errors.Is(err, pgwire.ErrPoolTimeout) || oc != nil {
		t.Fatalf("Acquire = %+v, %v, want ErrPoolTimeout", oc, err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("gave up after %s, want the 50ms WaitTimeout", waited)
	}
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx2, "k", b.dial); !errors.Is(err, pgwire.ErrPoolTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its context's deadline: %v, want ErrPoolTimeout and the deadline", err)
	}
	p.Release(ctx, "k", held, false)
	if oc, err := p.Acquire(ctx, "k", b.dial); oc != held || err != nil {
		t.Fatalf("after the release Acquire = %+v, %v, want the released backend", oc, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] || waits[1] {
		t.Errorf("OnWait saw %v, want two waits that got nothing", waits)
	}
	if p.Waiting() != 0 || p.Open() != 1 {
		t.Errorf("Waiting %d, Open %d; want 0 and 1", p.Waiting(), p.Open())
	}
}

func TestOriginPoolRoomForAnotherKey(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1})
	ctx := context.Background()
	a := mustAcquire(t, p, "alice", b.dial)
	bob := queueUp(t, p, "bob", b.dial)
	p.Release(ctx, "alice", a, false) // closed: bob cannot use alice's backend
	if got := <-bob; got.err != nil || got.oc == nil || got.oc == a {
		t.Fatalf("bob got %+v, want a backend of his own", got)
	}
	if _, live, peak := b.counts(); live != 1 || peak != 1 {
		t.Errorf("live %d, peak %d; want 1 and 1", live, peak)
	}

	// An idle backend of another key is closed to make room at once.
	p2 := newBoundedPool(t, PoolConfig{MaxOpen: 1})
	b2 := &backends{t: t}
	idle := mustAcquire(t, p2, "alice", b2.dial)
	p2.Release(ctx, "alice", idle, false)
	if oc, err := p2.Acquire(ctx, "bob", b2.dial); err != nil || oc == idle {
		t.Fatalf("bob got %+v, %v, want a new backend", oc, err)
	}
	if dialled, live, _ := b2.counts(); dialled != 2 || live != 1 || p2.Idle() != 0 {
		t.Errorf("dialled %d, live %d, idle %d; want 2, 1, 0", dialled, live, p2.Idle())
	}
}

func TestOriginPoolFailedDialGivesRoomBack(t *testing.T) {
	b := &backends{t: t, fail: errors.New("connection refused")}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1, WaitTimeout: time.Second})
	ctx := context.Background()
	if _, err := p.Acquire(ctx, "k", b.dial); err == nil {
		t.Fatal("Acquire succeeded with a failing dial")
	}
	b.mu.Lock()
	b.fail = nil
	b.mu.Unlock()
	if oc, err := p.Acquire(ctx, "k", b.dial); err != nil || oc == nil {
		t.Fatalf("Acquire after a failed dial = %+v, %v", oc, err)
	}
	if p.Open() != 1 {
		t.Errorf("Open = %d, want 1", p.Open())
	}
}

func TestOriginPoolCloseEndsWaits(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1})
	held := mustAcquire(t, p, "k", b.dial)
	waiting := queueUp(t, p, "k", b.dial)
	p.Close()
	if got := <-waiting; got.err == nil {
		t.Fatalf("waiting session got %+v from a closed pool", got)
	}
	p.Release(context.Background(), "k", held, false)
	if _, live, _ := b.counts(); live != 0 {
		t.Errorf("%d backends left open after Close and the last release", live)
	}
}

// TestOriginPoolGivingUpRaces: sessions give up their waits while
// backends are released and closed around them; no room is lost or
// made up, whichever comes first.
func TestOriginPoolGivingUpRaces(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 2, WaitTimeout: 3 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := []string{"a", "b"}[i%2]
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(4000))*time.Microsecond)
			defer cancel()
			oc, err := p.Acquire(ctx, key, b.dial)
			if err != nil {
				return
			}
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
			if i%5 == 0 {
				_ = oc.Conn.Close()
				return
			}
			p.Release(context.Background(), key, oc, false)
		}()
	}
	wg.Wait()
	_, live, peak := b.counts()
	if peak > 2 {
		t.Errorf("%d backends open at once, want at most 2", peak)
	}
	if p.Waiting() != 0 || p.Open() != live || p.Idle() != live {
		t.Errorf("Waiting %d, Open %d, Idle %d, live %d: want no one waiting and every live backend idle and counted", p.Waiting(), p.Open(), p.Idle(), live)
	}
	if oc, err := p.Acquire(context.Background(), "a", b.dial); err != nil || oc == nil {
		t.Fatalf("Acquire after the storm = %+v, %v", oc, err)
	}
}

func TestOriginPoolMaxLifetime(t *testing.T) {
	b := &backends{t: t}
	p := newBoundedPool(t, PoolConfig{MaxOpen: 1, MaxLifetime: 50 * time.Millisecond})
	ctx := context.Background()
	old := mustAcquire(t, p, "k", b.dial)
	p.Release(ctx, "k", old, false)
	if oc := mustAcquire(t, p, "k", b.dial); oc != old {
		t.Fatalf("a young idle backend was not reused")
	}
	waiting := queueUp(t, p, "k", b.dial)
	time.Sleep(60 * time.Millisecond)
	p.Release(ctx, "k", old, false) // too old: closed, its room handed on
	got := <-waiting
	if got.err != nil || got.oc == nil || got.oc == old {
		t.Fatalf("waiting session got %+v, want a new backend", got)
	}
	p.Release(ctx, "k", got.oc, false)
	time.Sleep(60 * time.Millisecond)
	if oc := mustAcquire(t, p, "k", b.dial); oc == got.oc {
		t.Fatal("an idle backend past its lifetime was lent")
	}
	if dialled, live, _ := b.counts(); dialled != 3 || live != 1 {
		t.Errorf("dialled %d, live %d; want 3 and 1", dialled, live)
	}
}
