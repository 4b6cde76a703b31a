package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// maxCapture bounds a response captured for the cache; larger ones are
// relayed and not cached.
const maxCapture = 16 << 20

// cacheState is a session's part in answering reads from the cache
// (session mode; transaction pooling relays only). Fields other than
// capture, flushed and unknown belong to the client pump.
type cacheState struct {
	req materialize.Request
	key []byte
	// stmts are the named statements this session parsed, by name.
	stmts map[string]prepared
	// unnamed is the unnamed statement (see unnamedStmt).
	unnamed unnamedStmt
	// seq is the last extended-protocol request parsed, kept so its
	// slices are reused from one request to the next.
	seq sequence
	// loopTypes are the parameter types of a Parse the event loop looks
	// at, reused likewise.
	loopTypes []uint32
	// extOpen is set while extended-protocol messages were forwarded
	// without their Sync; extExec when one of them was an Execute;
	// extRead when they are a read analysis found read only (it wrote
	// nothing, cacheable or not). Parse and Describe alone write nothing.
	extOpen, extExec, extRead bool

	// unknown holds why the session's state is not what the cache key
	// covers (SET, a ParameterStatus, DISCARD...), a bit per reason
	// (settings.go); a session reset clears most of them.
	unknown atomic.Uint32
	// published are the output settings as the origin last reported them
	// and the search path, copied on write by the origin's pump
	// (settings.go).
	published atomic.Pointer[publishedSettings]
	// uncached, if set, counts why the session became unknown.
	uncached func(reason string)
	// initial are the settings at startup, which a session reset restores.
	initial *publishedSettings
	// capture is the fill whose response the origin pump is collecting.
	capture atomic.Pointer[capture]
	// flushed is the ReadyForQuery count the origin pump had relayed and
	// flushed to the client: the session is idle when it equals sent.
	flushed atomic.Int64
	// swallowAt, when not 0, is the number of the request (counted like
	// sent) whose first ParseComplete answers a Parse restoreUnnamed sent.
	swallowAt atomic.Int64
}

type prepared struct {
	sql   string
	types []uint32
}

type capture struct {
	tk      *materialize.Ticket
	buf     []byte
	failed  bool
	errored bool // an ErrorResponse came
	// path or reset, instead of a fill, is a SET of the search path or a
	// session reset whose success the response tells (settings.go).
	path  *pathChange
	reset *sessionReset
}

// newCacheState starts a session's cache state from its startup
// parameters and the ParameterStatus messages the origin greeted it with;
// a startup parameter the key does not cover makes the session unknown to
// analysis.
func newCacheState(who materialize.Session, startup map[string]string, greeting []byte, uncached func(reason string)) *cacheState {
	c := &cacheState{stmts: map[string]prepared{}, uncached: uncached}
	c.req.Database, c.req.Role = who.Database, who.User
	c.req.Settings = &cache.Settings{}
	c.req.Session = analyze.SessionKnown
	for k, v := range startup {
		switch k {
		case "user", "database", "application_name", "client_encoding", "DateStyle", "TimeZone":
		case "extra_float_digits":
			c.req.Settings[cache.ExtraFloatDigits] = v
		default:
			c.req.Session = analyze.SessionUnknown
		}
	}
	for len(greeting) >= 5 {
		n := int(binary.BigEndian.Uint32(greeting[1:5]))
		if n < 4 || n+1 > len(greeting) {
			break
		}
		if greeting[0] == 'S' {
			name, val := parameterStatusFields(greeting[5 : n+1])
			if i, ok := keyedSetting(name); ok {
				c.req.Settings[i] = val
			}
			if !analyzable(name, val) {
				c.setUnknownBits(unknownAtStartup, uncachedEncoding)
			}
		}
		greeting = greeting[n+1:]
	}
	p := &publishedSettings{settings: *c.req.Settings}
	c.published.Store(p)
	c.req.Settings, c.initial = &p.settings, p
	return c
}

// cacheIdle reports whether the session is known and at rest: only then
// may a response be written from the cache, or captured.
func (s *session) cacheIdle() bool {
	return s.cache.unknown.Load() == 0 && s.atRest()
}

// atRest reports whether nothing is outstanding at the origin and all it
// answered has reached the client, outside any transaction.
func (s *session) atRest() bool {
	c := s.cache
	if c.extOpen {
		return false
	}
	if s.tx != nil {
		return s.txDetached()
	}
	sent := s.sent.Load()
	// The client may have read the last ReadyForQuery before the origin
	// pump recorded its flush: when every answer is in, the pump is
	// between its write and that store. Usually a moment; but a pump whose
	// write returned when every processor was busy waits for one, which
	// on a loaded machine takes milliseconds. Giving up sooner would send
	// a read to the origin unlooked-at and fence the session.
	var spin, deadline time.Time
	for c.flushed.Load() != sent && s.ready.Load() == sent {
		now := time.Now()
		switch {
		case deadline.IsZero():
			spin, deadline = now.Add(time.Millisecond), now.Add(cacheIdleWait)
		case now.After(deadline):
			return false
		case now.After(spin):
			time.Sleep(50 * time.Microsecond)
			continue
		}
		runtime.Gosched()
	}
	return c.flushed.Load() == sent && s.txStatus.Load() == 'I'
}

// cacheIdleWait bounds cacheIdle's wait for the origin pump.
const cacheIdleWait = 100 * time.Millisecond

// cacheMessage shows the cache the client message whose header r holds
// before it is forwarded: a request the cache answers is consumed
// (served); any other keeps the session's statements and its
// read-your-writes fence up to date.
func (s *session) cacheMessage(ctx context.Context, r *bufio.Reader, typ byte, n int) (served bool, err error) {
	switch typ {
	case 'Q':
		return s.cacheQuery(ctx, r, n)
	case 'S':
		s.cacheSync()
	case 'F':
		s.cacheWrote()
	case 'P', 'B', 'D', 'E', 'C', 'H':
		return s.cacheExtendedMessage(ctx, r, typ, n)
	}
	return false, nil
}

// cacheQuery offers a simple Query to the cache; served reports that the
// response was written from the cache and the message consumed.
func (s *session) cacheQuery(ctx context.Context, r *bufio.Reader, n int) (served bool, err error) {
	c := s.cache
	if n+1 > r.Size() || n < 5 {
		c.req.FencePending = true
		return false, nil
	}
	b, err := r.Peek(n + 1)
	if err != nil {
		return false, nil
	}
	body := b[5 : n+1-1]
	sql := unsafe.String(unsafe.SliceData(body), len(body))
	c.unnamed.forget() // a simple Query destroys the unnamed statement
	st := materialize.Classify(sql)
	if st.Class == materialize.ClassCacheable && !changesSettings(sql) {
		// One read, maybe: the hit path. A SELECT ... INTO TEMP looked
		// up is caught by its analysis (lookup).
		if !s.cacheIdle() {
			switch {
			case createsTemporary(st):
				c.setUnknown(uncachedTemporary)
			case s.mayChangeSettings(st):
				c.setUnknown(uncachedSettingsFunction)
			}
			// Not looked at, so not known to be a plain read.
			c.req.FencePending = true
			return false, nil
		}
		c.queryRequest(sql)
		return s.lookup(ctx, r, n+1)
	}
	if s.followReset(st) {
		return false, nil
	}
	if path, value, ok := searchPathChange(st); ok {
		s.followSearchPath(path, value)
		return false, nil
	}
	switch reason := s.uncachedReason(st); {
	case reason != "":
		c.setUnknown(reason)
		c.req.FencePending = true // EXECUTE, FETCH ... may write
	case st.Class != materialize.ClassSessionState:
		c.req.FencePending = true
	}
	return false, nil // a SET the cache follows writes nothing
}

// lookup asks the cache for c.req, whose request messages take total
// bytes of r.
func (s *session) lookup(ctx context.Context, r *bufio.Reader, total int) (bool, error) {
	c := s.cache
	c.syncSettings()
	a, key := s.srv.cfg.Cache.Lookup(ctx, &c.req, c.key)
	if a.Reason == string(analyze.ReasonSelectInto) && createsTemporary(materialize.Classify(c.req.SQL)) {
		c.setUnknown(uncachedTemporary)
	}
	if a.Entry == nil && s.mayChangeSettings(materialize.Classify(c.req.SQL)) {
		c.setUnknown(uncachedSettingsFunction) // the read runs at the origin
	}
	c.key = key
	c.req.SQL = "" // it may alias the read buffer
	c.req.Params = materialize.Params{}
	if !a.ReadOnly {
		c.req.FencePending = true
	}
	c.extRead = a.ReadOnly
	switch {
	case a.Entry != nil:
		s.park.pumpHit++
		if _, err := s.client.Write(a.Entry.Response()); err != nil {
			return false, err
		}
		_, err := r.Discard(total)
		return true, err
	case a.Ticket != nil:
		c.capture.Store(&capture{tk: a.Ticket})
	}
	return false, nil
}

// cacheExtendedMessage handles an extended-protocol message: a Bind
// may start a sequence the cache answers (served), Parse and Close keep
// the named statements known.
func (s *session) cacheExtendedMessage(ctx context.Context, r *bufio.Reader, typ byte, n int) (bool, error) {
	c := s.cache
	if !c.extOpen {
		c.extRead, c.extExec = false, false // a new request: nothing known about it yet
	}
	switch typ {
	case 'E':
		c.extExec = true
	case 'B':
		if !c.extOpen {
			served, err := s.cacheExtended(ctx, r)
			if served || err != nil {
				return served, err
			}
		}
	case 'P':
		if s.trackParse(r, n) && !c.extOpen {
			served, err := s.cacheParsed(ctx, r, n)
			if served || err != nil {
				return served, err
			}
		}
	case 'C':
		s.trackClose(r, n)
	}
	c.extOpen = true
	return false, nil
}

// cacheSync ends an extended-protocol request: unless it was a read the
// cache looked at, it may have written.
func (s *session) cacheSync() {
	if c := s.cache; c != nil {
		if c.extOpen && c.extExec && !c.extRead {
			c.req.FencePending = true
		}
		c.extOpen, c.extExec, c.extRead = false, false, false
	}
}

// cacheWrote notes a request that may have written (FunctionCall).
func (s *session) cacheWrote() {
	if s.cache != nil {
		s.cache.req.FencePending = true
	}
}

// cacheOriginMessage sees each origin message before it is relayed: a
// ParameterStatus means a setting changed; a fill in progress captures
// it. It returns the fill in progress, if any.
func (s *session) cacheOriginMessage(r *bufio.Reader, typ byte, total int) *capture {
	if typ == 'S' {
		if b, err := r.Peek(total); err == nil && total <= r.Size() {
			s.cache.parameterStatus(b[5:])
		} else {
			s.cache.setUnknown(uncachedParameterStatus)
		}
	}
	c := s.cache.capture.Load()
	if c != nil {
		s.captureMessage(c, r, typ, total)
	}
	return c
}

// cacheExtended offers a Bind-Describe?-Execute-Sync sequence on a named
// statement, wholly buffered, to the cache.
func (s *session) cacheExtended(ctx context.Context, r *bufio.Reader) (bool, error) {
	c := s.cache
	if !s.cacheIdle() {
		return false, nil
	}
	buf, _ := r.Peek(r.Buffered())
	seq := &c.seq
	total, ok := parseSequence(buf, seq)
	if !ok {
		return false, nil
	}
	p, ok := s.statement(seq.stmt)
	if !ok {
		return false, nil
	}
	c.sequenceRequest(p.sql, seq.shape, p.types)
	return s.lookup(ctx, r, total)
}

// statement is the prepared statement a Bind names: a named one, or the
// unnamed one if the client has it.
func (s *session) statement(name string) (prepared, bool) {
	if name == "" || s.tx == nil {
		return s.cache.statement(name, true)
	}
	s.tx.mu.Lock()
	st, ok := s.tx.stmts[name]
	s.tx.mu.Unlock()
	return prepared{sql: st.sql, types: st.types}, ok && st.sql != ""
}

// statement is the prepared statement a Bind names: a named one, or the
// unnamed one if the client has it (and, unless pendingOK, the origin has
// it too).
func (c *cacheState) statement(name string, pendingOK bool) (prepared, bool) {
	if name != "" {
		p, ok := c.stmts[name]
		return p, ok
	}
	u := &c.unnamed
	return prepared{sql: u.sql, types: u.types}, u.valid && (pendingOK || !u.pending)
}

// queryRequest makes c.req a simple Query of sql.
func (c *cacheState) queryRequest(sql string) {
	c.req.SQL, c.req.Shape = sql, ""
	c.req.Params = materialize.Params{}
	c.req.ResultFormats = nil
}

// sequenceRequest makes c.req the extended-protocol request c.seq holds,
// of the statement sql with parameter types.
func (c *cacheState) sequenceRequest(sql, shape string, types []uint32) {
	seq := &c.seq
	c.req.SQL, c.req.Shape = sql, shape
	c.req.Params = materialize.Params{Types: types, Formats: seq.paramFormats, Values: seq.values}
	c.req.ResultFormats = seq.resultFormats
}

// sequence is a parsed Bind [Describe] Execute Sync.
type sequence struct {
	stmt          string
	shape         string
	paramFormats  []int16
	values        [][]byte
	resultFormats []int16
}

// Shapes of the sequences parseSequence accepts.
const (
	shapeBindExecute       = "BES"
	shapeDescribePortal    = "BDPES"
	shapeDescribeStatement = "BDSES"
)

// parseSequence parses b into seq as Bind, optional Describe of the same
// portal or the statement, Execute of that portal without a row limit,
// Sync; total is the bytes they take. Anything else is not ok. seq's
// slices are reused, and its strings and values alias b, so a hit
// allocates nothing here.
func parseSequence(b []byte, seq *sequence) (total int, ok bool) {
	msg := func() (byte, []byte, bool) {
		if len(b) < total+5 {
			return 0, nil, false
		}
		n := int(binary.BigEndian.Uint32(b[total+1:]))
		if n < 4 || len(b) < total+1+n {
			return 0, nil, false
		}
		t, body := b[total], b[total+5:total+1+n]
		total += 1 + n
		return t, body, true
	}
	t, body, ok := msg()
	if !ok || t != 'B' {
		return 0, false
	}
	portal, ok := parseBind(body, seq)
	if !ok {
		return 0, false
	}
	seq.shape = shapeBindExecute
	t, body, ok = msg()
	if ok && t == 'D' {
		if len(body) < 2 {
			return 0, false
		}
		switch name := body[1 : len(body)-1]; {
		case body[0] == 'P' && string(name) == portal:
			seq.shape = shapeDescribePortal
		case body[0] == 'S' && string(name) == seq.stmt:
			seq.shape = shapeDescribeStatement
		default:
			return 0, false
		}
		t, body, ok = msg()
	}
	if !ok || t != 'E' || len(body) != len(portal)+5 || string(body[:len(portal)]) != portal || binary.BigEndian.Uint32(body[len(portal)+1:]) != 0 {
		return 0, false
	}
	if t, _, ok = msg(); !ok || t != 'S' {
		return 0, false
	}
	return total, true
}

// parseBind reads a Bind body into seq (values alias body).
func parseBind(b []byte, seq *sequence) (portal string, ok bool) {
	cstr := func() (string, bool) {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return "", false
		}
		s := unsafe.String(unsafe.SliceData(b), i)
		b = b[i+1:]
		return s, true
	}
	i16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		v := int(int16(binary.BigEndian.Uint16(b)))
		b = b[2:]
		return v, v >= 0
	}
	codes := func(out []int16) ([]int16, bool) {
		n, ok := i16()
		if !ok || len(b) < 2*n {
			return out, false
		}
		out = out[:0]
		for i := range n {
			out = append(out, int16(binary.BigEndian.Uint16(b[2*i:])))
		}
		b = b[2*n:]
		return out, true
	}
	if portal, ok = cstr(); !ok {
		return "", false
	}
	if seq.stmt, ok = cstr(); !ok {
		return "", false
	}
	if seq.paramFormats, ok = codes(seq.paramFormats); !ok {
		return "", false
	}
	n, ok := i16()
	if !ok {
		return "", false
	}
	seq.values = slices.Grow(seq.values[:0], n)[:n]
	for i := range seq.values {
		if len(b) < 4 {
			return "", false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			seq.values[i] = nil // NULL
			continue
		}
		if len(b) < l {
			return "", false
		}
		seq.values[i] = b[:l:l]
		b = b[l:]
	}
	if seq.resultFormats, ok = codes(seq.resultFormats); !ok || len(b) != 0 {
		return "", false
	}
	return portal, true
}

// trackParse records the statement a Parse defines for later Binds;
// unnamed reports that it is the unnamed statement and a cacheable read.
func (s *session) trackParse(r *bufio.Reader, n int) (unnamed bool) {
	c := s.cache
	if n+1 > r.Size() {
		c.setUnknown(uncachedLargeStatement)
		return false
	}
	b, err := r.Peek(n + 1)
	if err != nil {
		return false
	}
	body := b[5 : n+1]
	name, rest, ok1 := bytes.Cut(body, []byte{0})
	sql, rest, ok2 := bytes.Cut(rest, []byte{0})
	if len(name) == 0 {
		c.unnamed.forget() // whatever follows, the old one is gone
	}
	if !ok1 || !ok2 || len(rest) < 2 {
		return false
	}
	st := materialize.Classify(string(sql))
	if reason := s.uncachedReason(st); reason != "" {
		// SET ROLE, SET search_path, a settings function ... through
		// the extended protocol (looked at when parsed: a statement
		// parsed is run, mostly).
		c.setUnknown(reason)
		return false
	}
	if st.Class == materialize.ClassSessionState {
		return false
	}
	cacheable := st.Class == materialize.ClassCacheable && !st.Multi
	if len(name) == 0 {
		return cacheable && c.unnamed.set(b)
	}
	if s.tx != nil {
		return false // named statements: tx.stmts (txstmts.go)
	}
	if _, dup := c.stmts[string(name)]; dup {
		// The origin refuses a second Parse of a name: which statement
		// it holds is no longer certain.
		c.setUnknown(uncachedDuplicateStatement)
		return false
	}
	np := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 4*np || !cacheable {
		return false
	}
	types := make([]uint32, np)
	for i := range types {
		types[i] = binary.BigEndian.Uint32(rest[4*i:])
	}
	c.stmts[string(name)] = prepared{sql: strings.Clone(string(sql)), types: types}
	return false
}

// trackClose forgets a closed statement.
func (s *session) trackClose(r *bufio.Reader, n int) {
	if n+1 > r.Size() {
		return
	}
	b, err := r.Peek(n + 1)
	if err != nil || len(b) < 7 || b[5] != 'S' {
		return
	}
	name, _, _ := bytes.Cut(b[6:], []byte{0})
	s.cache.forgetStatement(name)
}

// forgetStatement drops what the session knows of a prepared statement.
func (c *cacheState) forgetStatement(name []byte) {
	if len(name) == 0 {
		c.unnamed.forget()
	}
	delete(c.stmts, string(name))
}

// captureMessage adds an origin message of total bytes to the fill in
// progress. Async and state-changing messages spoil it.
func (s *session) captureMessage(c *capture, r *bufio.Reader, typ byte, total int) {
	c.errored = c.errored || typ == 'E'
	if c.failed {
		return
	}
	if materialize.SpoilsFill(typ) {
		c.failed = true
		return
	}
	if c.tk == nil {
		return // a SET or reset watched, not a fill: nothing to keep
	}
	if total > r.Size() || len(c.buf)+total > maxCapture {
		c.failed = true
		return
	}
	b, err := r.Peek(total)
	if err != nil {
		c.failed = true
		return
	}
	c.buf = append(c.buf, b...)
}

// finishCapture ends the fill at ReadyForQuery with status.
func (s *session) finishCapture(c *capture, status byte) {
	s.cache.capture.Store(nil)
	switch {
	case c.path != nil:
		s.cache.searchPathSet(c, status)
		return
	case c.reset != nil:
		s.cache.resetDone(c, status)
		return
	}
	if c.failed || status != 'I' {
		s.srv.cfg.Cache.Abandon(c.tk)
		return
	}
	s.srv.cfg.Cache.Put(c.tk, c.buf)
}

// abandonCapture ends a fill the session will never complete.
func (s *session) abandonCapture() {
	if s.cache == nil {
		return
	}
	if c := s.cache.capture.Swap(nil); c != nil && c.tk != nil {
		s.srv.cfg.Cache.Abandon(c.tk)
	}
}

// createsTemporary reports, by its words, a statement that may create a
// temporary relation: CREATE [GLOBAL|LOCAL] TEMP[ORARY] ..., a relation
// created in pg_temp, SELECT ... INTO TEMP, or a DO block or several
// statements that say so.
// A temporary relation hides a table of the same name from its session's
// unqualified names (pg_temp comes first in every search_path), so that
// session is no longer answered from the cache; under transaction pooling
// it keeps its backend. Functions that create one are caught by the DDL
// trigger instead (connectors/postgres/ddl.go).
func createsTemporary(st materialize.Statement) bool {
	switch {
	case st.Multi, isKeyword(st, "CREATE", "DO"):
	case isKeyword(st, "SELECT", "WITH") && analyze.HasWord(st.SQL, "into"):
	default:
		return false
	}
	return analyze.HasWord(st.SQL, "temp") || analyze.HasWord(st.SQL, "temporary") || containsFold(st.SQL, "pg_temp")
}

// changesSettings reports a statement that may change session settings
// through set_config (for instance the role or search_path) without
// being a SET: the session's results are no longer keyed right.
func changesSettings(sql string) bool {
	const word = "set_config"
	for i := 0; i+len(word) <= len(sql); i++ {
		if strings.EqualFold(sql[i:i+len(word)], word) {
			return true
		}
	}
	return false
}
