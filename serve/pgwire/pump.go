package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// errTerminate ends a session whose client sent Terminate.
var errTerminate = errors.New("pgwire: client terminated")

// frontendTypes marks the message types a client may send after startup.
var frontendTypes = func() (t [256]bool) {
	for _, c := range []byte("BCDEFHPQSXcdfp") {
		t[c] = true
	}
	return t
}()

// needFlush reports whether w should be flushed before reading on: when
// the next message is not entirely in r's buffer, reading it could block,
// and what w holds must not wait for it.
func needFlush(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 5 {
		return true
	}
	hdr, _ := r.Peek(5)
	return int(binary.BigEndian.Uint32(hdr[1:]))+1 > n
}

// forward copies the next message, total bytes including its header,
// from r to w.
func forward(r *bufio.Reader, w *bufio.Writer, total int) error {
	if total <= r.Size() {
		b, err := r.Peek(total)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, err = r.Discard(total)
		return err
	}
	_, err := io.CopyN(w, r, int64(total))
	return err
}

// pumpClient relays client messages to the origin until the client
// leaves, breaks the protocol, or the origin side ends.
func (s *session) pumpClient(ctx context.Context) error {
	r := s.cr
	w := bufio.NewWriterSize(s.origin.Conn, s.srv.cfg.BufferSize)
	// What came before a violation or the client's end is still its.
	defer func() { _ = w.Flush() }()
	if err := resumeClient(s.resumed, r, w); err != nil {
		return s.clientErr(err)
	}
	for {
		if needFlush(r) {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write to origin: %w", err)
			}
		}
		if s.readyToPark(r) {
			return errPark
		}
		hdr, err := s.peekClient(r)
		if err != nil {
			return err
		}
		typ, n := hdr[0], int(int32(binary.BigEndian.Uint32(hdr[1:])))
		if err := s.checkFrontend(typ, n); err != nil {
			return err
		}
		if typ == 'X' {
			return errTerminate
		}
		if s.cache != nil {
			served, err := s.cacheMessage(ctx, r, typ, n)
			if err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
			if served {
				continue
			}
			if typ == 'B' || typ == 'D' {
				if err := s.restoreUnnamed(r, w, typ, n); err != nil {
					return fmt.Errorf("write to origin: %w", err)
				}
			}
		}
		s.accountClient(typ)
		s.park.pumpHit = 0
		if err := forward(r, w, n+1); err != nil {
			return s.clientErr(err)
		}
	}
}

// peekClient waits for the next message header, enforcing the idle
// timeout while nothing is outstanding.
func (s *session) peekClient(r *bufio.Reader) ([]byte, error) {
	idle := s.srv.cfg.IdleTimeout
	for {
		if idle > 0 && r.Buffered() == 0 {
			_ = s.client.SetReadDeadline(time.Now().Add(idle))
		}
		if s.originGone.Load() {
			return nil, errOriginGone
		}
		if s.drainable() {
			return nil, errDrained
		}
		s.awaitingRequest = r.Buffered() == 0
		hdr, err := r.Peek(5)
		s.awaitingRequest = false
		if err == nil {
			if s.drainable() {
				// Refused unread, as a backend ending just as it came.
				return nil, errDrained
			}
			return hdr, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || s.originGone.Load() {
			return nil, s.clientErr(err)
		}
		if s.srv.draining.Load() {
			// A drain's poke: look again at the boundary. Clearing the
			// deadline before looking misses no later poke.
			_ = s.client.SetReadDeadline(time.Time{})
			continue
		}
		if s.busy() || idle == 0 {
			continue
		}
		if s.txStatus.Load() != 'I' {
			return nil, fatalf(CodeIdleInTxTimeout, nil, "terminating connection due to idle-in-transaction timeout (freshet)")
		}
		return nil, fatalf(CodeIdleSessionTimeout, nil, "terminating connection due to idle-session timeout (freshet)")
	}
}

var errOriginGone = errors.New("pgwire: origin connection ended")

// errAtBoundary marks an origin pump stopped between two messages.
var errAtBoundary = errors.New("pgwire: origin pump stopped between messages")

func (s *session) clientErr(err error) error {
	if s.originGone.Load() {
		return errOriginGone
	}
	return fmt.Errorf("read client: %w", err)
}

// checkFrontend validates a message header: a type a client may send and
// a length within bounds.
func (s *session) checkFrontend(typ byte, n int) error {
	if !frontendTypes[typ] {
		return fatalf(CodeProtocolViolation, nil, "invalid frontend message type %d", typ)
	}
	if n < 4 {
		return fatalf(CodeProtocolViolation, nil, "invalid message length %d", n)
	}
	if n+1 > s.srv.cfg.MaxMessageSize {
		return fatalf(CodeProtocolViolation, nil, "message of %d bytes exceeds freshet's limit of %d", n+1, s.srv.cfg.MaxMessageSize)
	}
	return nil
}

// resumeClient writes what the event loop left for the origin: the
// messages it scanned and the rest of one it was streaming.
func resumeClient(rs resumeState, r *bufio.Reader, w *bufio.Writer) error {
	if _, err := w.Write(rs.toOrigin); err != nil {
		return err
	}
	if rs.clientSkip > 0 {
		_, err := io.CopyN(w, r, int64(rs.clientSkip))
		return err
	}
	return nil
}

// pumpOrigin relays origin messages to the client, noting each
// ReadyForQuery, until the origin connection ends.
func (s *session) pumpOrigin() error {
	r := s.origin.Reader
	w := bufio.NewWriterSize(s.client, s.srv.cfg.BufferSize)
	last := s.resumed.lastOrigin
	err := func() error {
		if _, err := w.Write(s.resumed.toClient); err != nil {
			return fmt.Errorf("write to client: %w", err)
		}
		if k := s.resumed.originSkip; k > 0 {
			if _, err := io.CopyN(w, r, int64(k)); err != nil {
				return fmt.Errorf("read origin: %w", err)
			}
		}
		for {
			if needFlush(r) {
				ready := s.ready.Load()
				if err := w.Flush(); err != nil {
					return fmt.Errorf("write to client: %w", err)
				}
				if s.cache != nil {
					s.cache.flushed.Store(ready)
				}
			}
			s.park.atTop = r.Buffered() == 0
			hdr, err := r.Peek(5)
			s.park.atTop = false
			if err != nil {
				// Part of a next header in the buffer means the backend
				// is mid-message: not a boundary, never reusable.
				if s.closing.Load() && r.Buffered() == 0 {
					return fmt.Errorf("%w: %w", errAtBoundary, err)
				}
				if s.park.asked.Load() && r.Buffered() == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("%w: %w", errParked, err)
				}
				return fmt.Errorf("read origin: %w", err)
			}
			typ, n := hdr[0], int(int32(binary.BigEndian.Uint32(hdr[1:])))
			if n < 4 {
				return fmt.Errorf("origin sent message %q with length %d", typ, n)
			}
			var fill *capture
			if s.cache != nil {
				if s.swallowParse(typ) {
					if _, err := r.Discard(n + 1); err != nil {
						return fmt.Errorf("read origin: %w", err)
					}
					continue
				}
				fill = s.cacheOriginMessage(r, typ, n+1)
			}
			if typ == 'Z' && n == 5 {
				z, err := r.Peek(6)
				if err != nil {
					return fmt.Errorf("read origin: %w", err)
				}
				if fill != nil {
					s.finishCapture(fill, z[5])
				}
				s.readyForQuery(z[5])
			}
			last = typ
			if err := forward(r, w, n+1); err != nil {
				return fmt.Errorf("relay origin message: %w", err)
			}
		}
	}()
	if errors.Is(err, errParked) {
		ready := s.ready.Load()
		if ferr := w.Flush(); ferr != nil {
			return fmt.Errorf("write to client: %w", ferr)
		}
		s.cache.flushed.Store(ready)
		return err
	}
	if s.closing.Load() {
		_ = w.Flush()
		return err
	}
	// The origin ended first: tell the client why unless the origin did.
	s.originGone.Store(true)
	if last != 'E' && w.Buffered() == 0 {
		_, _ = w.Write(encodeError(nil, fatalf(CodeConnectionFailure, err, "freshet: origin connection lost")))
	}
	_ = w.Flush()
	_ = s.client.SetReadDeadline(time.Now())
	return err
}
