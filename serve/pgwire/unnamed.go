package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"unsafe"
)

// unnamedStmt is the session's unnamed prepared statement as its client
// last defined it. Drivers that never name statements (lib/pq,
// node-postgres, pgx's exec modes, JDBC and psycopg before their
// prepare thresholds) send Parse, Bind, Describe, Execute and Sync in one
// request, or Parse then Bind-Execute: both are answered from the cache.
//
// A request answered from the cache never reaches the origin, so after
// one that began with a Parse the origin's unnamed statement is not the
// client's: pending holds that Parse, and it is sent ahead of the next
// message that uses the unnamed statement without parsing it again (its
// ParseComplete swallowed by the origin pump, see swallowParse).
type unnamedStmt struct {
	msg     []byte // the Parse message, reused from one to the next
	sql     string // aliases msg
	types   []uint32
	valid   bool // the client has an unnamed statement, and it is msg
	pending bool // the origin has not seen msg
}

// set records the Parse message m (header included) as the unnamed
// statement; false when m does not parse.
func (u *unnamedStmt) set(m []byte) bool {
	u.valid, u.pending = false, false
	name, sql, types, ok := parseParse(m, u.types)
	if !ok || len(name) != 0 {
		return false
	}
	u.keep(m, len(sql), types)
	return true
}

// keep records the well-formed unnamed Parse m, whose statement text is
// sqlLen bytes, with its parameter types.
func (u *unnamedStmt) keep(m []byte, sqlLen int, types []uint32) {
	u.msg = append(u.msg[:0], m...)
	u.sql = unsafe.String(&u.msg[6], sqlLen) // after the header and the empty name
	u.types = append(u.types[:0], types...)
	u.valid = true
}

// parseParse reads the Parse message m (header included): its statement
// name and text, and its parameter types into types (reused).
func parseParse(m []byte, types []uint32) (name, sql []byte, _ []uint32, ok bool) {
	name, rest, ok1 := bytes.Cut(m[5:], []byte{0})
	sql, rest, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || len(rest) < 2 {
		return nil, nil, types, false
	}
	np := int(binary.BigEndian.Uint16(rest))
	if rest = rest[2:]; len(rest) < 4*np {
		return nil, nil, types, false
	}
	types = types[:0]
	for i := range np {
		types = append(types, binary.BigEndian.Uint32(rest[4*i:]))
	}
	return name, sql, types, true
}

// forget drops the unnamed statement (replaced, closed, or destroyed by a
// simple Query).
func (u *unnamedStmt) forget() { u.valid, u.pending = false, false }

// P-prefixed shapes: the request began with the unnamed Parse, whose
// ParseComplete is part of the response.
const (
	shapeParseBindExecute       = "PBES"
	shapeParseDescribePortal    = "PBDPES"
	shapeParseDescribeStatement = "PBDSES"
)

func parseShape(shape string) string {
	switch shape {
	case shapeBindExecute:
		return shapeParseBindExecute
	case shapeDescribePortal:
		return shapeParseDescribePortal
	case shapeDescribeStatement:
		return shapeParseDescribeStatement
	}
	return ""
}

// cacheParsed offers the unnamed Parse trackParse just recorded,
// followed by Bind [Describe] Execute Sync, wholly buffered, to the
// cache. n is the Parse's length.
func (s *session) cacheParsed(ctx context.Context, r *bufio.Reader, n int) (bool, error) {
	c := s.cache
	if !s.cacheIdle() {
		return false, nil
	}
	buf, _ := r.Peek(r.Buffered())
	seq := &c.seq
	total, ok := parseSequence(buf[n+1:], seq)
	if !ok || seq.stmt != "" {
		return false, nil
	}
	u := &c.unnamed
	c.sequenceRequest(u.sql, parseShape(seq.shape), u.types)
	served, err := s.lookup(ctx, r, n+1+total)
	// Answered from the cache, the Parse never reached the origin.
	u.pending = served
	if served && s.tx != nil {
		s.tx.unnamed.keep(u.msg, len(u.sql), u.types)
	}
	return served, err
}

// usesUnnamed reports whether the client message typ (header included in
// b) refers to the unnamed statement: a Bind of it, or a Describe of it.
func usesUnnamed(typ byte, b []byte) bool {
	body := b[5:]
	switch typ {
	case 'B':
		_, rest, ok := bytes.Cut(body, []byte{0}) // the portal
		return ok && len(rest) > 0 && rest[0] == 0
	case 'D':
		return len(body) >= 2 && body[0] == 'S' && body[1] == 0
	}
	return false
}

// restoreUnnamed sends the unnamed statement's Parse to the origin ahead
// of a client message that uses it, when a cached answer kept it from the
// origin. The origin pump swallows its ParseComplete.
func (s *session) restoreUnnamed(r *bufio.Reader, w *bufio.Writer, typ byte, n int) error {
	u := &s.cache.unnamed
	if !u.pending || n+1 > r.Size() {
		return nil
	}
	b, err := r.Peek(n + 1)
	if err != nil || !usesUnnamed(typ, b) {
		return nil
	}
	// Its ParseComplete is the first one of the request now being sent,
	// which follows every request already sent.
	s.cache.swallowAt.Store(s.sent.Load() + 1)
	u.pending = false
	_, err = w.Write(u.msg)
	return err
}

// swallowParse reports whether the origin message typ is the
// ParseComplete of a Parse restoreUnnamed sent, which the client must not
// see. Any ParseComplete of that request will do: they are all alike.
func (s *session) swallowParse(typ byte) bool {
	at := s.cache.swallowAt.Load()
	if at == 0 {
		return false
	}
	switch ready := s.ready.Load() + 1; {
	case typ == '1' && ready == at:
		s.cache.swallowAt.Store(0)
		return true
	case ready > at:
		// That request ended without it (an error skipped the Parse).
		s.cache.swallowAt.Store(0)
	}
	return false
}

// txRestoreUnnamed is restoreUnnamed under transaction pooling, where
// the backend a Bind or Describe of the unnamed statement reaches may
// hold another client's unnamed statement, or none: unless the client's
// own Parse went to this backend since it was attached, it returns that
// Parse (tx.unnamed) to send ahead of msg, and expects the ParseComplete
// freshet drops. So the unnamed statement works across transactions, and
// a fill on it (always the first request of an attachment) runs the
// statement its key names. Called with tx.mu held, before msg's own
// expectations.
func (s *session) txRestoreUnnamed(msg []byte) []byte {
	tx := s.tx
	if !tx.unnamed.valid || tx.unnamedHere || !usesUnnamed(msg[0], msg) {
		return nil
	}
	tx.unnamedHere = true
	s.expect('1', true, "", func() { tx.unnamedHere = false })
	return slices.Clone(tx.unnamed.msg)
}
