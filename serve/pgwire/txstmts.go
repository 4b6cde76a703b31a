package pgwire

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"

	"github.com/freshetdb/freshet/materialize"
)

// Named prepared statements under transaction pooling. A client's named
// statement lives on the backend that ran its Parse, and its next
// transaction may get another backend. So the session keeps the Parse of
// each of its named statements. On backends a statement is named by its
// content ("freshet_" and a hash of its query and parameter types), so
// sessions share it. Bind and Describe are rewritten to that name, and a
// backend that lacks the statement gets it right before the message that
// needs it: a Close and a Parse whose answers the client never sees.
// PgBouncer 1.21's max_prepared_statements works the same way. Before,
// such a statement pinned the client to its backend, and pgx's default
// mode, JDBC and others ended up in session pooling.

// maxBackendStatements bounds the statements freshet keeps prepared on
// one backend: past it, preparing another closes one first (a workload of
// ever-new statement texts must not grow the backends' memory without
// bound; PgBouncer's max_prepared_statements is 200).
const maxBackendStatements = 1000

// txStmt is one of a session's named statements.
type txStmt struct {
	backend string // its name on backends
	parse   []byte // the Parse body after the name: query, parameter types
	// sql and types are parse decoded for the cache, when it is a read
	// the cache may answer (else sql is empty).
	sql   string
	types []uint32
}

// expectation is an answer a backend owes for a Parse or Close forwarded
// to it, in order: its ParseComplete or CloseComplete.
type expectation struct {
	typ  byte   // '1' or '3'
	drop bool   // freshet's own message: the client never sent it
	mark string // a statement the answer confirms prepared on the backend
	// sync is s.sent when it was forwarded: the ReadyForQuery that ends
	// its batch is the next one, and after it the answer is not coming
	// (an error skipped the message).
	sync int64
	// undo, for a client's Parse or Close, takes back what it did to the
	// session's statements when the backend skipped it.
	undo func()
	// backend and client, when set, are a statement's backend name that
	// an error answering this message shows, and the client's name for
	// it, which the client is shown instead.
	backend, client string
}

// backendName names a statement on backends by its content.
func backendName(parse []byte) string {
	sum := sha256.Sum256(parse)
	return "freshet_" + hex.EncodeToString(sum[:16])
}

// readMessage reads the whole message whose header r holds, n being its
// length field.
func readMessage(r *bufio.Reader, n int) ([]byte, error) {
	msg := make([]byte, n+1)
	_, err := io.ReadFull(r, msg)
	return msg, err
}

// txExtended accounts an extended-protocol message (Parse, Bind,
// Describe, Close) about to be sent to the attached backend and returns
// what to send instead: the message, rewritten to the backend's statement
// names, after the Close and Parse that prepare what it uses. Called with
// tx.mu held.
func (s *session) txExtended(msg []byte) []byte {
	tx := s.tx
	if !s.unsynced.Load() {
		s.unsynced.Store(true)
	}
	body := msg[5:]
	switch msg[0] {
	case 'P':
		return s.txParse(msg, body)
	case 'B':
		portal, rest, ok1 := cut0(body)
		name, tail, ok2 := cut0(rest)
		st, known := tx.stmts[string(name)]
		if !ok1 || !ok2 || len(name) == 0 || !known {
			return msg // unnamed, or unknown: the backend answers for it
		}
		out := s.ensurePrepared(nil, st)
		return appendMessage(out, 'B', portal, []byte{0}, []byte(st.backend), []byte{0}, tail)
	case 'D':
		if len(body) < 2 || body[0] != 'S' {
			return msg
		}
		name, _, ok := cut0(body[1:])
		st, known := tx.stmts[string(name)]
		if !ok || len(name) == 0 || !known {
			return msg
		}
		out := s.ensurePrepared(nil, st)
		return appendMessage(out, 'D', []byte{'S'}, []byte(st.backend), []byte{0})
	case 'C':
		var undo func()
		if len(body) >= 2 && body[0] == 'S' {
			switch name, _, ok := cut0(body[1:]); {
			case ok && len(name) > 0:
				undo = s.forget(string(name))
			case ok:
				tx.unnamed.forget()
			}
		}
		s.expect('3', false, "", undo) // no such statement on the backend: it just answers
	}
	return msg
}

// forget drops a named statement the client closes, and returns how to
// take that back if the backend turns out to have skipped the Close.
func (s *session) forget(name string) (undo func()) {
	tx := s.tx
	old, had := tx.stmts[name]
	delete(tx.stmts, name)
	// The Close goes as it is: it drops a backend statement of that
	// name, should the client's name be one of freshet's.
	delete(tx.cur.Prepared, name)
	if !had {
		return nil
	}
	return func() { tx.stmts[name] = old }
}

// txParse handles a Parse: the unnamed statement goes as it is; a named
// one is kept and sent under its backend name (a backend that has it
// already drops it first, so that the client's ParseComplete comes from
// the backend).
func (s *session) txParse(msg, body []byte) []byte {
	tx := s.tx
	name, rest, ok := cut0(body)
	if !ok {
		s.expect('1', false, "", nil)
		return msg
	}
	if sql, _, ok := cut0(rest); ok {
		s.trackSQL(string(sql), true)
	}
	if len(name) == 0 {
		tx.unnamed.set(msg)
		tx.unnamedHere = true
		s.expect('1', false, "", func() { tx.unnamedHere = false })
		return msg
	}
	if old, dup := tx.stmts[string(name)]; dup {
		// PostgreSQL refuses it (42P05); the backend does, for a Parse
		// of the name it has (which the error then shows).
		out := s.ensurePrepared(nil, old)
		s.expect('1', false, "", nil)
		e := &tx.expect[len(tx.expect)-1]
		e.backend, e.client = old.backend, string(name)
		return appendMessage(out, 'P', []byte(old.backend), []byte{0}, rest)
	}
	st := txStmt{backend: backendName(rest), parse: rest}
	if _, sql, types, ok := parseParse(msg, nil); ok && s.cache != nil {
		if c := materialize.Classify(string(sql)); c.Class == materialize.ClassCacheable && !c.Multi {
			st.sql, st.types = string(sql), types
		}
	}
	if tx.stmts == nil {
		tx.stmts = map[string]txStmt{}
	}
	tx.stmts[string(name)] = st
	var out []byte
	if tx.cur.Prepared[st.backend] {
		out = s.closeOnBackend(out, st.backend)
	}
	out = s.makeRoom(out)
	key := string(name)
	s.expect('1', false, st.backend, func() { delete(tx.stmts, key) })
	return appendMessage(out, 'P', []byte(st.backend), []byte{0}, st.parse)
}

// ensurePrepared appends a Close and a Parse of st, unless the attached
// backend has confirmed it has st. Called with tx.mu held.
func (s *session) ensurePrepared(out []byte, st txStmt) []byte {
	if s.tx.cur.Prepared[st.backend] {
		return out
	}
	// The Close makes the Parse succeed even if the statement is there
	// after all (a confirmation still on its way).
	out = s.closeOnBackend(out, st.backend)
	out = s.makeRoom(out)
	s.expect('1', true, st.backend, nil)
	return appendMessage(out, 'P', []byte(st.backend), []byte{0}, st.parse)
}

// closeOnBackend appends freshet's own Close of a backend statement.
func (s *session) closeOnBackend(out []byte, name string) []byte {
	delete(s.tx.cur.Prepared, name)
	s.expect('3', true, "", nil)
	return appendMessage(out, 'C', []byte{'S'}, []byte(name), []byte{0})
}

// makeRoom closes a statement on the attached backend when it holds as
// many as it may. Any one will do: one still needed is prepared again.
func (s *session) makeRoom(out []byte) []byte {
	if len(s.tx.cur.Prepared) < maxBackendStatements {
		return out
	}
	for name := range s.tx.cur.Prepared {
		return s.closeOnBackend(out, name)
	}
	return out
}

// expect records an answer the attached backend owes for what is about
// to be sent to it; undo, if set, is what to take back if it never comes.
func (s *session) expect(typ byte, drop bool, mark string, undo func()) {
	s.tx.expect = append(s.tx.expect, expectation{typ: typ, drop: drop, mark: mark, sync: s.sent.Load(), undo: undo})
}

// txAnswer takes a ParseComplete or CloseComplete from backend oc and
// reports whether the client must not see it (it answers freshet's own
// message). Called by oc's pump.
func (s *session) txAnswer(oc *OriginConn, typ byte) (drop bool) {
	tx := s.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if len(tx.expect) == 0 || tx.expect[0].typ != typ {
		return false
	}
	e := tx.expect[0]
	tx.expect = tx.expect[1:]
	if e.mark != "" {
		if oc.Prepared == nil {
			oc.Prepared = map[string]bool{}
		}
		oc.Prepared[e.mark] = true
	}
	return e.drop
}

// txErrorNames reports, for an ErrorResponse from the attached backend,
// the backend statement name it may show and the client's name for it,
// when the message it answers is a Parse of a name in use. Called by the
// backend's pump.
func (s *session) txErrorNames() (backend, client string, ok bool) {
	tx := s.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if len(tx.expect) == 0 || tx.expect[0].backend == "" {
		return "", "", false
	}
	return tx.expect[0].backend, tx.expect[0].client, true
}

// forwardRenamed relays the message of total bytes r holds with the
// backend's statement name replaced by the client's.
func forwardRenamed(r *bufio.Reader, w *bufio.Writer, total int, backend, client string) error {
	msg := make([]byte, total)
	if _, err := io.ReadFull(r, msg); err != nil {
		return err
	}
	body := bytes.ReplaceAll(msg[5:], []byte(backend), []byte(client))
	_, err := w.Write(appendMessage(nil, msg[0], body))
	return err
}

// settleExpectations forgets the answers a ReadyForQuery showed are not
// coming: an error made the backend skip those messages, so what the
// client's Parses and Closes among them did to its statements is taken
// back, last first. Called with tx.mu held, after readyForQuery.
func (s *session) settleExpectations() {
	ready := s.ready.Load()
	i := 0
	for i < len(s.tx.expect) && s.tx.expect[i].sync < ready {
		i++
	}
	for j := i - 1; j >= 0; j-- {
		if undo := s.tx.expect[j].undo; undo != nil {
			undo()
		}
	}
	s.tx.expect = s.tx.expect[i:]
}

// cut0 splits b at its first NUL.
func cut0(b []byte) (before, after []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// appendMessage appends a message of type typ whose body is parts.
func appendMessage(out []byte, typ byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	out = binary.BigEndian.AppendUint32(append(out, typ), uint32(n))
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
