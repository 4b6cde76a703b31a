package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/materialize"
	"github.com/jackc/pgx/v5/pgproto3"
)

// session is one client connection past startup and its origin backend.
type session struct {
	srv      *Server
	clientMu sync.Mutex // guards replacing client against a drain's poke
	client   net.Conn
	cr       *bufio.Reader // reads client
	// awaitingRequest is set while the client pump waits for a request
	// with nothing buffered: only that wait may end at a drain's poke.
	awaitingRequest bool
	origin          *OriginConn
	who             materialize.Session

	pid    uint32 // freshet's BackendKeyData
	secret [4]byte

	// sent counts forwarded requests that end in ReadyForQuery (Query,
	// Sync, FunctionCall); ready counts the ReadyForQuery messages
	// relayed back. The session is busy while sent > ready.
	sent, ready atomic.Int64
	txStatus    atomic.Uint32
	closing     atomic.Bool // the client side is done: origin errors are expected
	originGone  atomic.Bool // the origin side ended first
	// unsynced is set while extended-protocol messages are forwarded
	// without their Sync: the backend is then not at a clean boundary.
	unsynced  atomic.Bool
	stmtTimer *time.Timer
	poolKey   string
	released  bool // the backend went back to the Pool

	tx *txState // transaction pooling only

	cache *cacheState // nil: nothing is answered from the cache

	// Set when the event loop handed the session back: the client
	// connection made of its socket (tracked by the Server), and where
	// the pumps take over.
	adopted net.Conn
	resumed resumeState
	inLoop  atomic.Bool // the event loop relayed it

	park parking // a cached session's moves to and from the event loop
}

// resumeState is where the pumps take a session over from the event
// loop: bytes it scanned but had not written yet, and what remains of a
// message larger than the buffer that it was streaming. pumpClient reads
// the client's half, pumpOrigin the origin's.
type resumeState struct {
	toOrigin, toClient     []byte
	clientSkip, originSkip int
	lastOrigin             byte
}

func newSession(srv *Server, client net.Conn, cr *bufio.Reader, origin *OriginConn, startup *pgproto3.StartupMessage) *session {
	s := &session{srv: srv, client: client, cr: cr, origin: origin}
	s.who = materialize.Session{User: startup.Parameters["user"], Database: startup.Parameters["database"]}
	if srv.cfg.Pool != nil {
		s.poolKey = poolKey(startup.Parameters)
	}
	if s.who.Database == "" {
		s.who.Database = s.who.User
	}
	s.txStatus.Store(uint32(origin.TxStatus))
	if _, pass := srv.cfg.Cache.(materialize.PassThrough); !pass {
		s.cache = newCacheState(s.who, startup.Parameters, origin.Greeting, srv.metrics.uncachedSession)
	}
	srv.keys.add(s)
	if d := srv.cfg.StatementTimeout; d > 0 {
		s.stmtTimer = time.AfterFunc(d, s.statementTimedOut)
		s.stmtTimer.Stop()
	}
	return s
}

// keyData is freshet's BackendKeyData for this session.
func (s *session) keyData() []byte {
	b := make([]byte, 13)
	b[0] = 'K'
	binary.BigEndian.PutUint32(b[1:], 12)
	binary.BigEndian.PutUint32(b[5:], s.pid)
	copy(b[9:], s.secret[:])
	return b
}

// release unregisters the session and closes its origin backend.
func (s *session) release() {
	s.abandonCapture()
	s.srv.keys.remove(s)
	if s.stmtTimer != nil {
		s.stmtTimer.Stop()
	}
	if !s.released {
		_ = s.origin.Conn.Close()
	}
}

// accountClient notes a client message about to be forwarded to the
// session's own backend (session mode).
func (s *session) accountClient(typ byte) {
	switch typ {
	case 'Q', 'F':
		s.requestSent()
	case 'S':
		s.unsynced.Store(false)
		s.requestSent()
	case 'P', 'B', 'D', 'E', 'C', 'H':
		if !s.unsynced.Load() {
			s.unsynced.Store(true)
		}
	}
}

func (s *session) busy() bool { return s.sent.Load() > s.ready.Load() }

// reusable reports whether the backend may go back to the Pool after the
// client pump ended with err: the client left (not a violation), and the
// backend is idle, outside a transaction, at a clean protocol boundary.
func (s *session) reusable(err error) bool {
	if s.srv.cfg.Pool == nil || s.originGone.Load() || s.busy() || s.unsynced.Load() || s.txStatus.Load() != 'I' {
		return false
	}
	var fe *Error
	return !errors.As(err, &fe)
}

// run relays until either side ends, then tears both down: a backend
// left running a query for a vanished client is cancelled first.
func (s *session) run(ctx context.Context) {
	if s.tx != nil {
		s.runTx(ctx)
		return
	}
	defer s.release()
	if !s.srv.cfg.NoEventLoop && s.runInLoop(ctx) {
		return
	}
	defer func() {
		if s.adopted != nil {
			s.srv.dropConn(s.adopted)
		}
	}()
	s.prepareParking()
	for {
		pumped := make(chan error, 1)
		go func() { pumped <- s.pumpOrigin() }()
		err := s.pumpClient(ctx)
		if errors.Is(err, errPark) {
			perr := s.stopOrigin(pumped)
			if errors.Is(perr, errParked) {
				s.resumed = resumeState{}
				if s.parkInLoop(ctx) {
					return
				}
				continue
			}
			// The origin ended while the pumps stopped.
			pumped <- perr
			err = errOriginGone
		}
		s.finish(ctx, err, pumped)
		return
	}
}

// finish tears the session down after the client pump ended with err.
func (s *session) finish(ctx context.Context, err error, pumped <-chan error) {
	s.closing.Store(true)
	reuse := s.reusable(err)
	if reuse {
		// Stop the origin pump at a message boundary, keeping the backend.
		_ = s.origin.Conn.SetReadDeadline(time.Now())
	} else {
		if !s.originGone.Load() && (s.busy() || s.txStatus.Load() != 'I') && !errors.Is(err, errTerminate) {
			s.cancelOrigin(ctx)
		}
		_ = s.origin.Conn.Close()
	}
	if perr := <-pumped; reuse && errors.Is(perr, errAtBoundary) && s.reusable(err) {
		_ = s.origin.Conn.SetReadDeadline(time.Time{})
		s.srv.keys.remove(s)
		s.released = true
		s.srv.cfg.Pool.Release(ctx, s.poolKey, s.origin, true)
	}
	var fe *Error
	if errors.As(err, &fe) {
		_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.client.Write(encodeError(nil, fe))
	}
	if err != nil && !errors.Is(err, errTerminate) {
		s.srv.cfg.Logger.Debug("pgwire: session ended", "err", err, "user", s.who.User)
	}
}

// cancelOrigin asks the origin to cancel what the backend runs.
func (s *session) cancelOrigin(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	origin := s.origin
	if s.tx != nil {
		s.tx.mu.Lock()
		origin = s.tx.cur
		s.tx.mu.Unlock()
		if origin == nil {
			// Between transactions nothing runs, unless a request waits
			// for a backend: it must not run once one comes free.
			if abandon := s.tx.abandonWait.Load(); abandon != nil {
				s.tx.cancelled.Store(true)
				(*abandon)()
			}
			return
		}
	}
	if err := s.srv.cfg.Connector.Cancel(ctx, origin.Key); err != nil {
		s.srv.cfg.Logger.Warn("pgwire: cancel to origin failed", "err", err)
	}
}

func (s *session) statementTimedOut() {
	if s.busy() && !s.closing.Load() {
		s.cancelOrigin(context.Background())
	}
}

// requestSent records a forwarded request that ends in ReadyForQuery.
func (s *session) requestSent() {
	if s.sent.Add(1)-s.ready.Load() == 1 && s.stmtTimer != nil {
		s.stmtTimer.Reset(s.srv.cfg.StatementTimeout)
	}
}

// readyForQuery records a relayed ReadyForQuery.
func (s *session) readyForQuery(status byte) {
	s.txStatus.Store(uint32(status))
	if s.ready.Add(1) < s.sent.Load() {
		return
	}
	if s.stmtTimer != nil {
		s.stmtTimer.Stop()
	}
	if status == 'I' && s.srv.draining.Load() {
		s.pokeClient() // a boundary: the client pump ends the session
	}
}
