package materialize

import "context"

// Class is how the front end routes a statement.
type Class uint8

// Statement classes. The zero value, ClassOther, is always safe: it goes
// to the origin.
const (
	ClassOther        Class = iota // anything else: tunneled
	ClassCacheable                 // a read the cache may answer (a candidate, to be proven by analysis)
	ClassWrite                     // DML, DDL, COPY, CALL, DO: tunneled, fences the session
	ClassTxControl                 // BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
	ClassSessionState              // SET, RESET, PREPARE, LISTEN, DECLARE, DISCARD, ...
)

var classNames = [...]string{"other", "cacheable", "write", "tx-control", "session-state"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + string('0'+rune(c)) + ")"
}

// Statement is one client statement as the front end saw it.
type Statement struct {
	SQL   string
	Class Class
	// Keyword is the first keyword as written (a substring of SQL).
	Keyword string
	// Multi is set when SQL holds more than one statement; Class is then
	// that of the first, and a multi-statement string is never cacheable.
	Multi bool
}

// Session identifies whose statement it is: results are keyed by it, and
// a result computed for one role is never served to another.
type Session struct {
	Database string
	User     string
}

// Cache is the seam between a wire front end and the materializer
// (implemented by *Materializer). The front end offers every cacheable
// candidate read, while its session is idle, to Lookup: on a hit it
// writes Answer.Entry.Response() to the client as is; on a miss with a
// Ticket it sends the request to the origin, captures the complete
// response up to ReadyForQuery and offers it to Put, or Abandons the
// ticket if the response is an error or was not captured whole. A front
// end marks Request.FencePending after anything that may have written.
// Implementations are safe for concurrent use.
type Cache interface {
	Lookup(ctx context.Context, r *Request, key []byte) (Answer, []byte)
	Put(t *Ticket, response []byte) bool
	Abandon(t *Ticket)
}

var _ Cache = (*Materializer)(nil)

// SpoilsFill reports a PostgreSQL backend message that must never be part
// of a cached response: an error, a notice, a parameter change, a
// notification, or COPY. The front end's fill capture and the refresher
// (which must produce the same bytes) apply this one rule.
func SpoilsFill(typ byte) bool {
	switch typ {
	case 'E', 'N', 'S', 'A', 'G', 'H', 'W', 'd', 'c':
		return true
	}
	return false
}

// PassThrough is the Cache that caches nothing: every lookup goes to the
// origin unfilled, so a front end using it is a plain proxy.
type PassThrough struct{}

var _ Cache = PassThrough{}

// Lookup always bypasses.
func (PassThrough) Lookup(_ context.Context, _ *Request, key []byte) (Answer, []byte) {
	return Answer{Reason: "pass_through"}, key
}

// Put drops the response.
func (PassThrough) Put(*Ticket, []byte) bool { return false }

// Abandon does nothing.
func (PassThrough) Abandon(*Ticket) {}
