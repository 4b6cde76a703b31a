package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/freshetdb/freshet/materialize"
	"github.com/jackc/pgx/v5/pgproto3"
)

// txState is a transaction-pooled session's hold on origin backends.
//
// The client pump attaches a backend when a message arrives and none is
// attached; the backend's pump detaches it at the ReadyForQuery 'I' that
// answers the last request, when no extended-protocol message awaits its
// Sync and the session is not pinned. Both decisions are taken under mu,
// and the counters they read change under mu, so a message is never
// written to a backend that was handed back.
type txState struct {
	startup *pgproto3.StartupMessage
	auth    scramKeyAuth // template: copied for every new backend

	mu     sync.Mutex
	cur    *OriginConn // the attached backend, nil between transactions
	pinned bool        // opaque session state: keep cur until the end
	// sets are the SET/RESET statements run outside transactions, replayed
	// in order on each backend whose State is not sig.
	sets []string
	sig  string

	cw    *bufio.Writer // to the client; used by the attached backend's pump
	pumps sync.WaitGroup

	// unnamed is the client's unnamed statement; unnamedHere is set when
	// it went to the attached backend since it was attached
	// (txRestoreUnnamed). unnamed belongs to the client pump.
	unnamed     unnamedStmt
	unnamedHere bool

	stmts  map[string]txStmt // named statements, by the client's names (txstmts.go)
	expect []expectation     // answers the attached backend owes, in order

	// waits is the context of the client pump's waits for a backend
	// (Server.stoppable). abandonWait, set while one runs, ends it
	// (watchWait); cancelled records that a CancelRequest did.
	waits       context.Context
	abandonWait atomic.Pointer[func()]
	cancelled   atomic.Bool
}

// runTx relays a transaction-pooled session.
func (s *session) runTx(ctx context.Context) {
	tx := s.tx
	tx.cw = bufio.NewWriterSize(s.client, s.srv.cfg.BufferSize)
	defer s.release() // the greeting's backend is already back: s.released
	var done func()
	tx.waits, done = s.srv.stoppable(ctx, s.watchWait)
	defer done()
	err := s.pumpTxClient(ctx)
	s.closing.Store(true)
	tx.mu.Lock()
	cur := tx.cur
	tx.cur = nil
	clean := cur != nil && !s.originGone.Load() && !s.busy() && !s.unsynced.Load() && s.txStatus.Load() == 'I'
	tx.mu.Unlock()
	if cur != nil {
		if clean {
			_ = cur.Conn.SetReadDeadline(time.Now())
		} else {
			s.cancelBackend(ctx, cur)
			_ = cur.Conn.Close()
		}
	}
	tx.pumps.Wait()
	if cur != nil && clean {
		_ = cur.Conn.SetReadDeadline(time.Time{})
		// A pinned backend carries opaque state: reset it before reuse.
		s.srv.cfg.Pool.Release(ctx, s.poolKey, cur, tx.pinned)
	}
	var fe *Error
	if errors.As(err, &fe) {
		_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.client.Write(encodeError(nil, fe))
	}
}

// txDetached reports whether the session holds no backend: every
// request it sent was answered and flushed to the client, outside a
// transaction, and it is not pinned. Only the client pump attaches one.
func (s *session) txDetached() bool {
	s.tx.mu.Lock()
	defer s.tx.mu.Unlock()
	return s.tx.cur == nil
}

func (s *session) cancelBackend(ctx context.Context, oc *OriginConn) {
	if !s.busy() && s.txStatus.Load() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	_ = s.srv.cfg.Connector.Cancel(ctx, oc.Key)
}

// pumpTxClient relays client messages, attaching a backend as needed.
func (s *session) pumpTxClient(ctx context.Context) error {
	tx, r := s.tx, s.cr
	var w *bufio.Writer
	var wFor *OriginConn
	// discarding: a cancelled extended-protocol request is being skipped
	// up to its Sync (refuseCancelled).
	var discarding bool
	defer func() {
		if w != nil {
			_ = w.Flush()
		}
	}()
	for {
		if w != nil && needFlush(r) {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write to origin: %w", err)
			}
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
		if discarding {
			if discarding, err = s.discardUntilSync(r, typ, n); err != nil {
				return err
			}
			continue
		}
		if typ == 'Q' {
			tx.unnamed.forget() // a simple Query destroys it
		}
		if s.cache != nil {
			served, err := s.cacheMessage(ctx, r, typ, n)
			if err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
			if served {
				continue
			}
		}
		var msg []byte
		if typ == 'P' || typ == 'B' || typ == 'D' || typ == 'C' {
			// Read before taking the lock: a client slow to send the rest
			// must not hold up the backend's pump.
			if msg, err = readMessage(r, n); err != nil {
				return s.clientErr(err)
			}
		}
		tx.mu.Lock()
		if tx.cur == nil {
			// Only this pump attaches, so cur stays nil while it waits
			// for a backend without the lock.
			tx.mu.Unlock()
			oc, err := s.acquireTx(ctx)
			if errors.Is(err, errWaitCancelled) {
				if discarding, err = s.refuseCancelled(r, typ, n, msg); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			tx.mu.Lock()
			if err := s.attach(ctx, oc); err != nil {
				tx.mu.Unlock()
				return err
			}
		}
		if tx.cur != wFor {
			w, wFor = bufio.NewWriterSize(tx.cur.Conn, s.srv.cfg.BufferSize), tx.cur
		}
		if msg != nil {
			pre := s.txRestoreUnnamed(msg)
			out := s.txExtended(msg)
			if pre != nil {
				out = append(pre, out...)
			}
			tx.mu.Unlock()
			if _, err := w.Write(out); err != nil {
				return fmt.Errorf("write to origin: %w", err)
			}
			continue
		}
		s.account(ctx, r, typ, n)
		tx.mu.Unlock()
		if err := forward(r, w, n+1); err != nil {
			return s.clientErr(err)
		}
	}
}

// account updates the request counters and the session state for the
// message about to be forwarded. Called with tx.mu held.
func (s *session) account(ctx context.Context, r *bufio.Reader, typ byte, n int) {
	switch typ {
	case 'Q':
		if sql, ok := peekString(r, n, 0); ok {
			s.trackSQL(sql, false)
		} else {
			s.tx.pinned = true // too large to inspect: assume the worst
		}
		s.requestSent()
	case 'S':
		s.unsynced.Store(false)
		s.requestSent()
	case 'F':
		s.requestSent()
	default:
		s.unsynced.Store(true)
	}
}

// peekString returns the idx-th NUL-terminated string of the buffered
// message body of length n-4 (aliasing the buffer: valid until the
// message is consumed).
func peekString(r *bufio.Reader, n, idx int) (string, bool) {
	if n+1 > r.Size() {
		return "", false
	}
	b, err := r.Peek(n + 1)
	if err != nil {
		return "", false
	}
	b = b[5:]
	for ; idx > 0; idx-- {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return "", false
		}
		b = b[i+1:]
	}
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(b), i), true
}

// trackSQL records SET/RESET for replay and pins the session on state a
// backend keeps that cannot be replayed. Called with tx.mu held.
func (s *session) trackSQL(sql string, viaParse bool) {
	tx := s.tx
	if tx.pinned {
		return
	}
	st := materialize.Classify(sql)
	if containsFold(sql, "advisory_lock") && !containsFold(sql, "xact") || containsFold(sql, "set_config") || s.mayChangeSettings(st) {
		tx.pinned = true
		return
	}
	kw := strings.ToUpper(st.Keyword)
	switch {
	case createsTemporary(st):
		tx.pinned = true
	case st.Class != materialize.ClassSessionState:
	case kw == "SET" || kw == "RESET":
		idle := !s.busy() && s.txStatus.Load() == 'I' && !s.unsynced.Load()
		if viaParse || st.Multi || !idle || containsFold(sql, "transaction") || containsFold(sql, "characteristics") || containsFold(sql, "local") {
			tx.pinned = true
			return
		}
		tx.sets = append(tx.sets, strings.Clone(sql))
		tx.sig = fmt.Sprintf("%p/%d", tx, len(tx.sets))
		tx.cur.State = tx.sig
	case kw == "LISTEN", kw == "PREPARE", kw == "DECLARE", kw == "LOAD", kw == "DISCARD", kw == "DEALLOCATE":
		tx.pinned = true
	}
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && lower(s[i+j]) == sub[j] {
			j++
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// acquireTx takes a backend from the pool, or opens one, for the
// session's next transaction.
func (s *session) acquireTx(ctx context.Context) (*OriginConn, error) {
	tx := s.tx
	dial := func() (*OriginConn, error) {
		auth := tx.auth
		ctx, cancel := context.WithTimeout(ctx, s.srv.cfg.StartupTimeout)
		defer cancel()
		return s.srv.cfg.Connector.Connect(ctx, tx.startup, &auth)
	}
	oc, err := s.srv.acquire(tx.waits, s.poolKey, dial)
	if err == nil {
		return oc, nil
	}
	var fe *Error
	var oe *OriginError
	switch {
	case errors.Is(err, ErrAbandoned) && s.tx.cancelled.Load():
		return nil, errWaitCancelled
	case errors.As(err, &fe), errors.Is(err, ErrAbandoned):
		return nil, err
	case errors.As(err, &oe):
		return nil, &Error{Severity: "FATAL", Code: oe.Response.Code, Message: oe.Response.Message, Err: err}
	}
	return nil, fatalf(CodeConnectionFailure, err, "freshet: could not connect to origin")
}

// errWaitCancelled: a CancelRequest ended the client pump's wait for a
// backend. The request never reached the origin.
var errWaitCancelled = errors.New("pgwire: request cancelled while waiting for an origin connection")

// refuseCancelled answers the request whose wait for a backend a
// CancelRequest ended as PostgreSQL answers a cancelled statement, and the
// session goes on: an ErrorResponse (57014) and, for a simple Query or a
// function call, ReadyForQuery at once; an extended-protocol message
// starts a discard up to the batch's Sync (discarding), which is answered
// with ReadyForQuery. The message that waited is consumed here unless
// read already (msg). No backend is attached, so the session is idle.
func (s *session) refuseCancelled(r *bufio.Reader, typ byte, n int, msg []byte) (discarding bool, err error) {
	if msg == nil {
		if _, err := r.Discard(n + 1); err != nil {
			return false, s.clientErr(err)
		}
	}
	if typ == 'P' && s.cache != nil {
		// The cache saw the Parse (trackParse); the origin never did.
		name, _, _ := bytes.Cut(msg[5:], []byte{0})
		s.cache.forgetStatement(name)
	}
	out := encodeError(nil, &Error{Severity: "ERROR", Code: CodeQueryCanceled,
		Message: "canceling statement due to user request (freshet: it was waiting for an origin connection)"})
	discarding = typ != 'Q' && typ != 'F'
	if !discarding {
		out = append(out, 'Z', 0, 0, 0, 5, 'I')
	}
	return discarding, s.writeDetached(out)
}

// discardUntilSync skips a message of a cancelled extended-protocol batch;
// its Sync ends the discard with ReadyForQuery, as PostgreSQL ends the
// discard that follows an error.
func (s *session) discardUntilSync(r *bufio.Reader, typ byte, n int) (discarding bool, err error) {
	if _, err := r.Discard(n + 1); err != nil {
		return true, s.clientErr(err)
	}
	if typ != 'S' {
		return true, nil
	}
	s.cacheSync()
	return false, s.writeDetached([]byte{'Z', 0, 0, 0, 5, 'I'})
}

// writeDetached writes b to the client of a session that holds no
// backend, which leaves the client's writer to the client pump.
func (s *session) writeDetached(b []byte) error {
	tx := s.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if _, err := tx.cw.Write(b); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	if err := tx.cw.Flush(); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// watchWait watches a wait of the client pump for a backend: it is
// abandoned when the client hangs up, or when it sends a CancelRequest
// (cancelOrigin), which would otherwise find no backend to cancel and
// let the request run once one came free.
func (s *session) watchWait() (<-chan struct{}, func()) {
	abandoned := make(chan struct{})
	var once sync.Once
	abandon := func() { once.Do(func() { close(abandoned) }) }
	s.tx.cancelled.Store(false)
	s.tx.abandonWait.Store(&abandon)
	stopWatch := watchClient(s.client, abandon)
	return abandoned, func() {
		s.tx.abandonWait.Store(nil)
		stopWatch()
	}
}

// attach brings oc's session settings in line, makes it the session's
// backend and starts its pump. Called with tx.mu held.
func (s *session) attach(ctx context.Context, oc *OriginConn) error {
	tx := s.tx
	if oc.State != tx.sig {
		if err := s.replay(oc); err != nil {
			_ = oc.Conn.Close()
			return fatalf(CodeConnectionFailure, err, "freshet: could not restore session settings on an origin backend")
		}
	}
	tx.cur, tx.unnamedHere = oc, false
	tx.pumps.Add(1)
	go func() {
		defer tx.pumps.Done()
		s.pumpTxOrigin(ctx, oc)
	}()
	return nil
}

// replay resets a backend's settings and runs the session's SET/RESET
// statements on it, in order. A statement that failed for the client
// fails here too and is ignored, which leaves the same state.
func (s *session) replay(oc *OriginConn) error {
	_ = oc.Conn.SetDeadline(time.Now().Add(s.srv.cfg.StartupTimeout))
	defer func() { _ = oc.Conn.SetDeadline(time.Time{}) }()
	var buf []byte
	queries := append([]string{"RESET ALL"}, s.tx.sets...)
	for _, q := range queries {
		buf = append(buf, 'Q', 0, 0, 0, 0)
		binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(len(q)+5))
		buf = append(append(buf, q...), 0)
	}
	if _, err := oc.Conn.Write(buf); err != nil {
		return err
	}
	for pending := len(queries); pending > 0; {
		var hdr [5]byte
		if _, err := io.ReadFull(oc.Reader, hdr[:]); err != nil {
			return err
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
		if n < 4 || n > 1<<20 {
			return fmt.Errorf("origin message length %d", n)
		}
		if _, err := oc.Reader.Discard(n - 4); err != nil {
			return err
		}
		if hdr[0] == 'Z' {
			pending--
		}
	}
	oc.State = s.tx.sig
	return nil
}

// pumpTxOrigin relays one attached backend's messages to the client and
// hands the backend back at the end of a transaction.
func (s *session) pumpTxOrigin(ctx context.Context, oc *OriginConn) {
	tx, r := s.tx, oc.Reader
	err := func() error {
		for {
			if needFlush(r) {
				if err := tx.cw.Flush(); err != nil {
					return fmt.Errorf("write to client: %w", err)
				}
			}
			hdr, err := r.Peek(5)
			if err != nil {
				return fmt.Errorf("read origin: %w", err)
			}
			typ, n := hdr[0], int(int32(binary.BigEndian.Uint32(hdr[1:])))
			if n < 4 {
				return fmt.Errorf("origin sent message %q with length %d", typ, n)
			}
			if (typ == '1' || typ == '3') && s.txAnswer(oc, typ) {
				if _, err := r.Discard(n + 1); err != nil {
					return fmt.Errorf("read origin: %w", err)
				}
				continue
			}
			var fill *capture
			if s.cache != nil {
				fill = s.cacheOriginMessage(r, typ, n+1)
			}
			if typ == 'Z' && n == 5 {
				done, err := s.txReady(ctx, oc, fill)
				if done || err != nil {
					return err
				}
				continue
			}
			if typ == 'E' && n+1 <= r.Size() {
				if backend, client, ok := s.txErrorNames(); ok {
					if err := forwardRenamed(r, tx.cw, n+1, backend, client); err != nil {
						return fmt.Errorf("relay origin message: %w", err)
					}
					continue
				}
			}
			if err := forward(r, tx.cw, n+1); err != nil {
				return fmt.Errorf("relay origin message: %w", err)
			}
		}
	}()
	if err == nil || s.closing.Load() {
		return
	}
	s.originGone.Store(true)
	_, _ = tx.cw.Write(encodeError(nil, fatalf(CodeConnectionFailure, err, "freshet: origin connection lost")))
	_ = tx.cw.Flush()
	_ = s.client.SetReadDeadline(time.Now())
}

// txReady relays a ReadyForQuery, ending the fill in progress if any,
// and, when it ends the transaction, detaches the backend and returns it
// to the pool (done).
func (s *session) txReady(ctx context.Context, oc *OriginConn, fill *capture) (done bool, err error) {
	tx, r := s.tx, oc.Reader
	z, err := r.Peek(6)
	if err != nil {
		return false, fmt.Errorf("read origin: %w", err)
	}
	status := z[5]
	if fill != nil {
		s.finishCapture(fill, status)
	}
	tx.mu.Lock()
	s.readyForQuery(status)
	s.settleExpectations()
	release := status == 'I' && !s.busy() && !s.unsynced.Load() && !tx.pinned && !s.closing.Load() && tx.cur == oc
	if err := forward(r, tx.cw, 6); err != nil {
		tx.mu.Unlock()
		return false, fmt.Errorf("relay origin message: %w", err)
	}
	if !release {
		tx.mu.Unlock()
		return false, nil
	}
	// Hand over at a boundary: the backend is back in the pool before the
	// client learns the transaction ended (so its next request, or the
	// next client's, finds it), and the client has everything before the
	// next backend's pump can write.
	tx.cur = nil
	s.srv.cfg.Pool.Release(ctx, s.poolKey, oc, false)
	ferr := tx.cw.Flush()
	tx.mu.Unlock()
	if ferr != nil {
		return true, fmt.Errorf("write to client: %w", ferr)
	}
	return true, nil
}
