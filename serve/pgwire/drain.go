package pgwire

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Shutdown drains the Server, as a rolling restart needs: it stops
// accepting clients and ends every session at its next boundary —
// between transactions, with nothing sent to the origin unanswered —
// with FATAL 57P01, as PostgreSQL ends sessions on a fast shutdown. An
// idle session ends at once; a request in flight is answered first, and
// an open transaction may commit or roll back. A client's pool takes the
// 57P01 as a dead connection and reconnects elsewhere, so no request is
// cut off and no commit's outcome is left unknown. When ctx ends before
// every session has, Shutdown closes the rest as Close does (their open
// transactions roll back) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	s.stop()
	for ln := range s.lns {
		_ = ln.Close()
	}
	loop := s.loop
	s.mu.Unlock()
	if loop != nil {
		// The pumps watch for boundaries; the loop does not.
		loop.drain()
	}
	for _, sess := range s.keys.sessions() {
		sess.pokeClient()
	}
	ended := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(ended)
	}()
	var err error
	select {
	case <-ended:
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = s.Close()
	return err
}

// errDrained ends a session at a boundary while the Server drains.
var errDrained = fatalf(CodeAdminShutdown, nil, "terminating connection due to administrator command (freshet is shutting down)")

// drainable reports whether the Server drains and the session is at a
// boundary, where ending it loses nothing: no request sent to the origin
// unanswered, no extended-protocol message awaiting its Sync, outside a
// transaction. A request the client sent meanwhile is refused unread
// (57P01 tells it nothing ran); waiting for a gap between requests
// would never end a busy pooled connection.
func (s *session) drainable() bool {
	return s.srv.draining.Load() && !s.busy() && !s.unsynced.Load() && s.txStatus.Load() == 'I'
}

// pokeClient wakes a client pump waiting for the client, so that it
// looks at the drain.
func (s *session) pokeClient() {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	_ = s.client.SetReadDeadline(time.Now())
}

// setClient gives the session a new client connection (the event loop
// handed it back).
func (s *session) setClient(c net.Conn) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	s.client = c
}

// clientReader reads a session's client connection. The deadline a
// drain sets to wake the client pump ends only a wait for the next
// request: in the middle of a message it is cleared and the rest waited
// for, so that a drain never cuts a request in two.
type clientReader struct {
	conn net.Conn
	s    *session // nil until the session exists: startup reads plainly
}

func (c *clientReader) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	for n == 0 && c.midMessageDrainWake(err) {
		_ = c.conn.SetReadDeadline(time.Time{})
		n, err = c.conn.Read(p)
	}
	return n, err
}

func (c *clientReader) midMessageDrainWake(err error) bool {
	return err != nil && c.s != nil && !c.s.awaitingRequest && c.s.srv.draining.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}
