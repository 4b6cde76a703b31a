package pgwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

// A cached session whose requests are cache hits is parked in the event
// loop, which answers further hits itself: one read and one write per
// hit, no goroutine woken (ADR 0005). The pumps park it when it is idle
// at a clean boundary after parkAfter consecutive hits; the loop hands it
// back, with every byte it did not answer, at the first request that is
// not a hit now, or when the origin speaks. A stint in the loop that
// answered few hits doubles parkAfter, so a session that writes between
// its reads is not moved back and forth.
const (
	minParkHits = 2
	maxParkHits = 1024
	// longStint is the hits of a loop stint that was worth its move.
	longStint = 16
)

// errPark stops the client pump at a request boundary to park the
// session; errParked is the origin pump stopped for it.
var (
	errPark   = errors.New("pgwire: session parks in the event loop")
	errParked = errors.New("pgwire: origin pump stopped to park the session")
)

// parking holds what the pumps need to park a session.
type parking struct {
	ok      bool // the session may be parked
	hl      materialize.HitLooker
	asked   atomic.Bool // stopOrigin wants the origin pump to stop
	atTop   bool        // the origin pump waits for a message with nothing buffered
	pumpHit int         // consecutive hits the pumps answered
	after   int         // hits before the pumps park the session
}

// prepareParking decides once whether the session may be parked; its
// origin reader then lets the origin pump be stopped between messages.
func (s *session) prepareParking() {
	p := &s.park
	hl, ok := s.srv.cfg.Cache.(materialize.HitLooker)
	p.ok = ok && s.cache != nil && s.tx == nil && loopParkable(s) && s.origin.Reader.Buffered() == 0
	if !p.ok {
		return
	}
	p.hl, p.after = hl, minParkHits
	s.origin.Reader = bufio.NewReaderSize(&originReader{s: s, conn: s.origin.Conn}, s.srv.cfg.BufferSize)
}

// loopParkable reports the configuration and sockets the event loop can
// hold a cached session with.
func loopParkable(s *session) bool {
	cfg := &s.srv.cfg
	return parkSupported && !cfg.NoEventLoop && cfg.Pool == nil && cfg.IdleTimeout == 0 && cfg.Mode == SessionMode &&
		plainSocket(s.client) && plainSocket(s.origin.Conn)
}

func plainSocket(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// readyToPark reports, in the client pump about to wait for the client,
// that the session may be parked: its last requests were hits, nothing
// is outstanding or pending, and the cache would be asked as the loop
// asks it.
func (s *session) readyToPark(r *bufio.Reader) bool {
	p := &s.park
	return p.ok && p.pumpHit >= p.after && r.Buffered() == 0 && s.loopIdle() && !s.srv.draining.Load()
}

// loopIdle is cacheIdle without waiting, plus what the loop cannot do:
// resolve a pending fence, finish a fill, restore the unnamed statement.
func (s *session) loopIdle() bool {
	c := s.cache
	sent := s.sent.Load()
	return !c.extOpen && c.unknown.Load() == 0 && !c.req.FencePending && s.txStatus.Load() == 'I' &&
		s.ready.Load() == sent && c.flushed.Load() == sent && c.capture.Load() == nil &&
		c.swallowAt.Load() == 0 && !s.originGone.Load()
}

// stopOrigin stops the origin pump for a park: it returns errParked
// once the pump stopped between two messages with nothing buffered, or
// the pump's error if the origin ended meanwhile.
func (s *session) stopOrigin(pumped <-chan error) error {
	s.park.asked.Store(true)
	_ = s.origin.Conn.SetReadDeadline(time.Now())
	err := <-pumped
	s.park.asked.Store(false)
	return err
}

// unpark resumes the pumps after a park that did not happen.
func (s *session) unpark() {
	_ = s.origin.Conn.SetReadDeadline(time.Time{})
	s.park.pumpHit = 0
	s.park.after = min(2*s.park.after, maxParkHits)
}

// afterLoopStint adapts parkAfter to the hits a loop stint answered.
func (s *session) afterLoopStint(hits int) {
	p := &s.park
	p.pumpHit = 0
	if hits >= longStint {
		p.after = minParkHits
	} else {
		p.after = min(2*p.after, maxParkHits)
	}
}

// originReader reads the origin for the origin pump. The deadline a park
// sets ends only a read between messages; mid-message, the rest of the
// message (the backend sends it whole) is waited for.
type originReader struct {
	s    *session
	conn net.Conn
}

func (o *originReader) Read(p []byte) (int, error) {
	n, err := o.conn.Read(p)
	if err == nil || o.s.park.atTop || !o.s.park.asked.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	_ = o.conn.SetReadDeadline(time.Time{})
	n, err = o.conn.Read(p)
	_ = o.conn.SetReadDeadline(time.Now())
	return n, err
}

// hitVerdict is what the loop does with the request at the head of a
// parked session's client bytes.
type hitVerdict uint8

const (
	hitMore hitVerdict = iota // not whole yet: read on
	hitNo                     // not a hit now: the pumps take it
	hitYes                    // answered: write the entry
)

// loopHit looks at the request at the head of b for the event loop:
// a simple Query or Bind [Describe] Execute Sync the pumps would offer to
// the cache, answered only if it is a hit right now. On a hit, total is
// the request's bytes and the session's cache state is as the pumps
// leave it after a hit; otherwise nothing changed, so the pumps handle
// the request as if the loop had never seen it.
func (s *session) loopHit(b []byte) (e *cache.Entry, total int, v hitVerdict) {
	end, v := s.requestEnd(b)
	if v != hitYes {
		return nil, 0, v
	}
	if !s.loopIdle() {
		return nil, 0, hitNo
	}
	c := s.cache
	switch b[0] {
	case 'Q':
		e = s.loopQuery(b[:end])
	case 'P':
		e = s.loopParsed(b[:end])
	default:
		e = s.loopExtended(b[:end])
	}
	c.req.SQL = "" // it may alias the loop's buffer
	c.req.Params = materialize.Params{}
	if e == nil {
		return nil, 0, hitNo
	}
	c.extRead, c.extExec = true, false
	return e, end, hitYes
}

// requestEnd finds the end of the request at the head of b: a whole
// Query, or whole messages from a Bind or Parse through its Sync.
func (s *session) requestEnd(b []byte) (end int, v hitVerdict) {
	for i := 0; ; i++ {
		if len(b)-end < 5 {
			return 0, hitMore
		}
		typ, n := b[end], int(int32(uint32(b[end+1])<<24|uint32(b[end+2])<<16|uint32(b[end+3])<<8|uint32(b[end+4])))
		if s.checkFrontend(typ, n) != nil || (i == 0 && typ != 'Q' && typ != 'B' && typ != 'P') || i > 4 {
			return 0, hitNo
		}
		if len(b)-end < n+1 {
			return 0, hitMore
		}
		end += n + 1
		if typ == 'Q' || typ == 'S' {
			return end, hitYes
		}
	}
}

// loopQuery is cacheQuery's hit for the whole Query m.
func (s *session) loopQuery(m []byte) *cache.Entry {
	if len(m) < 6 {
		return nil
	}
	body := m[5 : len(m)-1]
	sql := unsafe.String(unsafe.SliceData(body), len(body))
	st := materialize.Classify(sql)
	if st.Class != materialize.ClassCacheable || st.Multi || changesSettings(sql) {
		return nil
	}
	c := s.cache
	c.queryRequest(sql)
	e := s.lookupHit()
	if e != nil {
		c.unnamed.forget() // a simple Query destroys the unnamed statement
	}
	return e
}

// loopExtended is cacheExtended's hit for the whole request m.
func (s *session) loopExtended(m []byte) *cache.Entry {
	c := s.cache
	seq := &c.seq
	total, ok := parseSequence(m, seq)
	if !ok || total != len(m) {
		return nil
	}
	p, ok := c.statement(seq.stmt, false)
	if !ok {
		return nil
	}
	c.sequenceRequest(p.sql, seq.shape, p.types)
	return s.lookupHit()
}

// lookupHit asks the cache for a hit on c.req without blocking.
func (s *session) lookupHit() *cache.Entry {
	c := s.cache
	c.syncSettings()
	e, key := s.park.hl.LookupHit(&c.req, c.key)
	c.key = key
	return e
}

// loopParsed is cacheParsed's hit for the whole request m: an unnamed
// Parse, then Bind [Describe] Execute Sync of it. Only a hit records the
// Parse as the unnamed statement (kept from the origin, as the pumps do).
func (s *session) loopParsed(m []byte) *cache.Entry {
	c := s.cache
	n := int(binary.BigEndian.Uint32(m[1:5]))
	parse := m[:n+1]
	name, sql, types, ok := parseParse(parse, c.loopTypes)
	c.loopTypes = types
	if !ok || len(name) != 0 {
		return nil
	}
	text := unsafe.String(unsafe.SliceData(sql), len(sql))
	st := materialize.Classify(text)
	if st.Class != materialize.ClassCacheable || st.Multi || changesSettings(text) {
		return nil
	}
	seq := &c.seq
	total, ok := parseSequence(m[n+1:], seq)
	if !ok || n+1+total != len(m) || seq.stmt != "" {
		return nil
	}
	c.sequenceRequest(text, parseShape(seq.shape), c.loopTypes)
	e := s.lookupHit()
	if e != nil {
		c.unnamed.keep(parse, len(sql), c.loopTypes)
		c.unnamed.pending = true // answered from the cache, it never reached the origin
	}
	return e
}
