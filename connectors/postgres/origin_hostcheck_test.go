package postgres

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

// fakeRoles answers host checks from a table the test changes, and counts
// the checks.
type fakeRoles struct {
	mu     sync.Mutex
	answer map[string]error
	calls  map[string]int
}

func (f *fakeRoles) check(_ context.Context, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[addr]++
	return f.answer[addr]
}

func (f *fakeRoles) set(addr string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer[addr] = err
}

func listening(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

var errStandby = errors.New("read only connection")

func TestOriginChoosesHostByCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, c := listening(t), listening(t), listening(t)
	for _, tt := range []struct {
		name    string
		answers map[string]error
		want    string // "" for no host
	}{
		{"the first host that fits", map[string]error{a: errStandby, b: nil, c: nil}, b},
		{"prefer-standby: a preferred host after one that is not", map[string]error{a: ErrHostNotPreferred, b: errStandby, c: nil}, c},
		{"prefer-standby: a host not preferred when none is", map[string]error{a: errStandby, b: ErrHostNotPreferred, c: ErrHostNotPreferred}, b},
		{"no host fits", map[string]error{a: errStandby, b: errStandby, c: errStandby}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			roles := &fakeRoles{answer: tt.answers, calls: map[string]int{}}
			o, err := NewOrigin(OriginConfig{Addr: a, Fallbacks: []OriginHost{{Addr: b}, {Addr: c}}, CheckHost: roles.check})
			if err != nil {
				t.Fatal(err)
			}
			conn, host, err := o.dial(ctx)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), errStandby.Error()) || !strings.Contains(err.Error(), a) {
					t.Fatalf("dial = %s, %v; want an error naming the hosts and why", host, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.Close()
			if host != tt.want {
				t.Fatalf("dialled %s, want %s", host, tt.want)
			}
		})
	}
}

// TestOriginHostCheckKept: a host's check is made once however many
// sessions dial meanwhile; an answer older than CheckMaxAge is checked
// again in the background, and a changed role (a failover) is followed.
func TestOriginHostCheckKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := listening(t), listening(t)
	roles := &fakeRoles{answer: map[string]error{a: errStandby, b: nil}, calls: map[string]int{}}
	const maxAge = 200 * time.Millisecond
	o, err := NewOrigin(OriginConfig{Addr: a, Fallbacks: []OriginHost{{Addr: b}}, CheckHost: roles.check, CheckMaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	dial := func() string {
		t.Helper()
		conn, host, err := o.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
		return host
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if host := dial(); host != b {
				t.Errorf("dialled %s, want %s", host, b)
			}
		})
	}
	wg.Wait()
	roles.mu.Lock()
	calls := maps.Clone(roles.calls)
	roles.mu.Unlock()
	if time.Since(start) < maxAge && (calls[a] != 1 || calls[b] != 1) {
		t.Fatalf("checks %v for 20 dials within %v, want one per host", calls, maxAge)
	}
	// The failover: a is the primary now, b a standby.
	roles.set(a, nil)
	roles.set(b, errStandby)
	time.Sleep(maxAge)
	deadline := time.Now().Add(2 * time.Second)
	for dial() != a {
		if time.Now().After(deadline) {
			t.Fatal("dials did not follow the failover")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOriginHostCheckHangs: a dial waits for a host's first check only
// until its own deadline, and the check, on a context of its own, serves
// the dials after; once a host is known, a check that hangs does not
// hold dials up.
func TestOriginHostCheckHangs(t *testing.T) {
	a := listening(t)
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	o, err := NewOrigin(OriginConfig{Addr: a, CheckMaxAge: time.Millisecond, CheckHost: func(ctx context.Context, addr string) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 || n == 3 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := o.dial(short); err == nil || !strings.Contains(err.Error(), "not checked yet") {
		t.Fatalf("dial before the first check ended: %v, want not checked yet", err)
	}
	release <- struct{}{}
	for range 3 { // the second check answers at once, the third hangs
		conn, host, err := o.dial(context.Background())
		if err != nil || host != a {
			t.Fatalf("dial: %s, %v; want %s", host, err, a)
		}
		_ = conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
}

// TestOriginPoolLendsOnlyFittingHosts: after a failover, the idle backends
// on a host that no longer fits are closed, not lent.
func TestOriginPoolLendsOnlyFittingHosts(t *testing.T) {
	fits := map[string]bool{"old:5432": false, "new:5432": true}
	p, err := NewOriginPool(PoolConfig{HostFits: func(host string) bool { return fits[host] }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	backend := func(host string) (*pgwire.OriginConn, net.Conn) {
		mine, theirs := net.Pipe()
		t.Cleanup(func() { _ = theirs.Close() })
		return &pgwire.OriginConn{Conn: mine, Key: pgwire.BackendKey{Host: host}}, theirs
	}
	onNew, _ := backend("new:5432")
	onOld, oldPeer := backend("old:5432")
	ctx := context.Background()
	p.Release(ctx, "k", onNew, false)
	p.Release(ctx, "k", onOld, false) // the most recent: offered first
	dialled, _ := backend("new:5432")
	dial := func() (*pgwire.OriginConn, error) { return dialled, nil }
	if got, err := p.Acquire(ctx, "k", dial); got != onNew || err != nil {
		t.Fatalf("Acquire = %+v, %v, want the backend on the host that fits", got, err)
	}
	if _, err := oldPeer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the backend on the host that no longer fits was not closed")
	}
	if got, err := p.Acquire(ctx, "k", dial); got != dialled || err != nil {
		t.Fatalf("Acquire = %+v, %v, want none left, so a new one", got, err)
	}
}

// TestOriginFits: a host fits until a check refuses it, and a host not
// preferred still fits (it may keep serving when no standby can).
func TestOriginFits(t *testing.T) {
	a, b := listening(t), listening(t)
	roles := &fakeRoles{answer: map[string]error{a: errStandby, b: ErrHostNotPreferred}, calls: map[string]int{}}
	gate := make(chan struct{})
	var outcomesMu sync.Mutex
	outcomes := map[string]string{}
	o, err := NewOrigin(OriginConfig{Addr: a, Fallbacks: []OriginHost{{Addr: b}}, CheckHost: func(ctx context.Context, addr string) error {
		<-gate
		return roles.check(ctx, addr)
	}, OnHostCheck: func(host, outcome string) {
		outcomesMu.Lock()
		defer outcomesMu.Unlock()
		outcomes[host] = outcome
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Fits(a) { // its first check is under way
		t.Fatal("a host never checked does not fit")
	}
	close(gate)
	conn, _, err := o.dial(context.Background()) // the checks' answers are in
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if o.Fits(a) || !o.Fits(b) {
		t.Fatalf("fits: %s %v (refused), %s %v (not preferred)", a, o.Fits(a), b, o.Fits(b))
	}
	outcomesMu.Lock()
	if outcomes[a] != "refused" || outcomes[b] != "not_preferred" {
		t.Errorf("outcomes %v, want %s refused and %s not_preferred", outcomes, a, b)
	}
	outcomesMu.Unlock()
	if !o.Fits("elsewhere:5432") {
		t.Fatal("a host not among the origin's was refused")
	}
	roles.mu.Lock()
	checked := roles.calls["elsewhere:5432"]
	roles.mu.Unlock()
	if checked != 0 {
		t.Fatal("a host not among the origin's was checked")
	}
	plain, err := NewOrigin(OriginConfig{Addr: a})
	if err != nil {
		t.Fatal(err)
	}
	if !plain.Fits(a) {
		t.Fatal("without target_session_attrs every host fits")
	}
}
