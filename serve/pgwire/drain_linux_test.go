//go:build linux

package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// shutdownAsync starts a drain of sess's Server, bounded by within, and
// returns where its result arrives.
func shutdownAsync(sess *session, within time.Duration) <-chan error {
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		res <- sess.srv.Shutdown(ctx)
	}()
	return res
}

// drainedWith checks that the session ended and that the last thing its
// client got, after want, is FATAL 57P01.
func drainedWith(t *testing.T, client net.Conn, done <-chan struct{}, want []byte) {
	t.Helper()
	waitEnded(t, done, "the drain left the session running")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client connection not closed: %v", err)
	}
	if !bytes.HasPrefix(b, want) {
		t.Fatalf("client got %q, want %q first", b, want)
	}
	if got := lastErrorCode(t, b[len(want):]); got != CodeAdminShutdown {
		t.Fatalf("client got %q after its answers: SQLSTATE %q, want %q", b[len(want):], got, CodeAdminShutdown)
	}
}

func shutdownReturns(t *testing.T, res <-chan error, want error) {
	t.Helper()
	select {
	case err := <-res:
		if !errors.Is(err, want) {
			t.Fatalf("Shutdown: %v, want %v", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// An idle session ends at once, wherever it runs: relayed by the event
// loop, on the pumps, or parked in the loop answering cache hits.
func TestShutdownEndsIdleSessions(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) (client net.Conn, sess *session, done chan struct{})
		where func(*session) bool
	}{
		{"relayed in the event loop", func(t *testing.T) (net.Conn, *session, chan struct{}) {
			client, origin, sess, done := loopedSession(t, Config{})
			answered(t, client, origin, msg('Q', "select 1\x00"), cat(msg('C', "SELECT 1\x00"), msg('Z', "I")))
			return client, sess, done
		}, func(s *session) bool { return s.inLoop.Load() }},
		{"on the pumps", func(t *testing.T) (net.Conn, *session, chan struct{}) {
			client, origin, sess, done := runSession(t, Config{NoEventLoop: true}, nil, nil)
			answered(t, client, origin, msg('Q', "select 1\x00"), cat(msg('C', "SELECT 1\x00"), msg('Z', "I")))
			return client, sess, done
		}, func(s *session) bool { return !s.inLoop.Load() }},
		{"parked with cache hits", func(t *testing.T) (net.Conn, *session, chan struct{}) {
			client, origin, sess, done := cachedSession(t, Config{}, newFakeCache(), nil)
			warmParked(t, client, origin, sess, "5")
			return client, sess, done
		}, func(s *session) bool { return s.srv.loopStats.parks.Load() > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, sess, done := tt.start(t)
			if !tt.where(sess) {
				t.Fatal("the session did not run where this case needs it")
			}
			res := shutdownAsync(sess, 5*time.Second)
			drainedWith(t, client, done, nil)
			shutdownReturns(t, res, nil)
		})
	}
}

// A session in a transaction goes on until the transaction ends, then
// ends; a request in flight is answered first.
func TestShutdownWaitsForTransaction(t *testing.T) {
	for _, cfg := range []Config{{}, {NoEventLoop: true}} {
		t.Run(map[bool]string{false: "event loop", true: "pumps"}[cfg.NoEventLoop], func(t *testing.T) {
			client, origin, sess, done := runSession(t, cfg, nil, nil)
			answered(t, client, origin, msg('Q', "begin\x00"), cat(msg('C', "BEGIN\x00"), msg('Z', "T")))
			res := shutdownAsync(sess, 5*time.Second)
			update := msg('Q', "update t set v = 1\x00")
			if _, err := client.Write(update); err != nil {
				t.Fatal(err)
			}
			readFrontend(t, origin, len(update))
			time.Sleep(50 * time.Millisecond) // the drain meets a request in flight
			inTx := cat(msg('C', "UPDATE 1\x00"), msg('Z', "T"))
			if _, err := origin.Write(inTx); err != nil {
				t.Fatal(err)
			}
			if got := readMessages(t, client, 'Z'); !bytes.Equal(got, inTx) {
				t.Fatalf("client got %q, want %q", got, inTx)
			}
			committed := cat(msg('C', "COMMIT\x00"), msg('Z', "I"))
			answered(t, client, origin, msg('Q', "commit\x00"), committed)
			drainedWith(t, client, done, nil)
			shutdownReturns(t, res, nil)
			if sess.srv.cfg.Connector.(*fakeConnector).cancelCount() != 0 {
				t.Fatal("a drained session's backend was cancelled")
			}
		})
	}
}

// A request the client is halfway through sending when the drain starts
// is forwarded whole and answered.
func TestShutdownWaitsForARequestHalfSent(t *testing.T) {
	client, origin, sess, done := runSession(t, Config{NoEventLoop: true}, nil, nil)
	query := msg('Q', "select 'a request in two parts'\x00")
	if _, err := client.Write(query[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the pump waits for the rest
	res := shutdownAsync(sess, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write(query[10:]); err != nil {
		t.Fatal(err)
	}
	if got := readFrontend(t, origin, len(query)); !bytes.Equal(got, query) {
		t.Fatalf("origin got %q, want %q", got, query)
	}
	resp := cat(msg('C', "SELECT 1\x00"), msg('Z', "I"))
	if _, err := origin.Write(resp); err != nil {
		t.Fatal(err)
	}
	drainedWith(t, client, done, resp)
	shutdownReturns(t, res, nil)
}

// A transaction still open when the drain's time is up is ended as
// Close ends it: its backend cancelled and closed (it rolls back).
func TestShutdownTimesOut(t *testing.T) {
	client, origin, sess, done := runSession(t, Config{}, nil, nil)
	answered(t, client, origin, msg('Q', "begin\x00"), cat(msg('C', "BEGIN\x00"), msg('Z', "T")))
	start := time.Now()
	res := shutdownAsync(sess, 300*time.Millisecond)
	shutdownReturns(t, res, context.DeadlineExceeded)
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before its deadline", took)
	}
	waitEnded(t, done, "the session outlived the drain's deadline")
	if n := sess.srv.cfg.Connector.(*fakeConnector).cancelCount(); n != 1 {
		t.Fatalf("%d cancels for the open transaction, want 1", n)
	}
	_ = origin.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(origin); err != nil {
		t.Fatalf("origin connection not closed: %v", err)
	}
}

// A drained Server accepts no one: Serve returns and dialling fails.
func TestShutdownStopsAccepting(t *testing.T) {
	srv, err := New(Config{Connector: &fakeConnector{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	} else {
		_ = c.Close()
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		_ = c.Close()
		t.Fatal("a drained Server's address still accepts connections")
	}
}

// fullPool has no backend to lend: each Acquire says it waits on
// waiting, and waits until its context ends or its client is found gone.
type fullPool struct{ waiting chan struct{} }

func newFullPool() fullPool { return fullPool{waiting: make(chan struct{}, 1)} }

func (p fullPool) Acquire(ctx context.Context, _ string, _ func() (*OriginConn, error)) (*OriginConn, error) {
	abandoned, stop := Abandoned(ctx)
	defer stop()
	p.waiting <- struct{}{}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-abandoned:
		return nil, ErrAbandoned
	}
}

func (fullPool) Release(_ context.Context, _ string, oc *OriginConn, _ bool) { _ = oc.Conn.Close() }

// fullPoolSession starts a transaction-pooled session on pool whose
// client sends script (and then holds the connection open, with hold).
func fullPoolSession(t testing.TB, pool fullPool, script []byte, hold bool) (sess *session, client *scriptConn, done chan struct{}) {
	t.Helper()
	fc := &fakeConnector{}
	srv, err := New(Config{Connector: fc, Mode: TransactionMode, Pool: pool, Verifiers: fakeVerifiers{}, MaxMessageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	client = newScriptConn(script, hold)
	origin, err := fc.Connect(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	startup := &pgproto3.StartupMessage{Parameters: map[string]string{"user": "u"}}
	sess = newSession(srv, client, bufio.NewReaderSize(client, srv.cfg.BufferSize), origin, startup)
	sess.tx, sess.released = &txState{startup: startup}, true
	done = make(chan struct{})
	srv.wg.Add(1) // as serveConn does: Shutdown waits for the session
	go func() {
		defer srv.wg.Done()
		defer close(done)
		sess.run(context.Background())
	}()
	return sess, client, done
}

// waitingSession starts a transaction-pooled session whose request
// waits for a backend from a full pool, and returns once it waits.
func waitingSession(t *testing.T, script []byte) (sess *session, client *scriptConn, done chan struct{}) {
	t.Helper()
	pool := newFullPool()
	sess, client, done = fullPoolSession(t, pool, script, true)
	select {
	case <-pool.waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the session never asked the pool for a backend")
	}
	return sess, client, done
}

// A transaction-pooled session waiting for a backend from a full pool
// ends with 57P01 when the Server drains, without waiting out the
// pool's own limit: nothing it asked for reached the origin.
func TestShutdownEndsAWaitForABackend(t *testing.T) {
	sess, client, done := waitingSession(t, msg('Q', "select 1\x00"))
	res := shutdownAsync(sess, 30*time.Second)
	waitEnded(t, done, "the drain left the session waiting for a backend")
	if got := lastErrorCode(t, client.written()); got != CodeAdminShutdown {
		t.Fatalf("client got %q: SQLSTATE %q, want %q", client.written(), got, CodeAdminShutdown)
	}
	shutdownReturns(t, res, nil)
}

// A CancelRequest for a session waiting for a backend ends the wait as
// PostgreSQL ends a cancelled statement, and the session goes on: an
// ERROR 57014 and ReadyForQuery, the rest of an extended-protocol batch
// discarded up to its Sync. There is no backend to cancel, and the
// request must not run once one comes free.
func TestCancelEndsAWaitForABackend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []byte
	}{
		{"simple query", msg('Q', "select 1\x00")},
		{"extended batch", cat(
			msg('P', "s1\x00select 1\x00\x00\x00"),
			msg('B', "\x00s1\x00\x00\x00\x00\x00\x00\x00"),
			msg('D', "P\x00"),
			msg('E', "\x00\x00\x00\x00\x00"),
			msg('H', ""),
			msg('S', ""))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, client, done := waitingSession(t, cat(tc.script, msg('X', "")))
			sess.cancelOrigin(context.Background())
			waitEnded(t, done, "the session did not go on to the client's Terminate after the cancel")
			got := client.written()
			var types []byte
			for b := got; len(b) >= 5; b = b[1+binary.BigEndian.Uint32(b[1:]):] {
				types = append(types, b[0])
			}
			if string(types) != "EZ" || !bytes.HasSuffix(got, []byte{'Z', 0, 0, 0, 5, 'I'}) {
				t.Fatalf("client got %q, want an ErrorResponse and ReadyForQuery (idle)", got)
			}
			var e pgproto3.ErrorResponse
			if err := e.Decode(got[5 : len(got)-6]); err != nil || e.Severity != "ERROR" || e.Code != CodeQueryCanceled {
				t.Fatalf("client got %+v (%v), want ERROR %s", e, err, CodeQueryCanceled)
			}
			if n := sess.srv.cfg.Connector.(*fakeConnector).cancelCount(); n != 0 {
				t.Errorf("%d cancels sent to the origin for a request that never reached it", n)
			}
		})
	}
}
