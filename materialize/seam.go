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

// Result is a complete, encoded wire response to a statement.
type Result struct {
	Wire []byte
}

// Cache is the seam between a wire front end and the materializer. The
// front end offers every cacheable candidate to Lookup, the origin's
// answers to misses to Fill, and every write to Fence. Implementations are
// safe for concurrent use.
type Cache interface {
	// Lookup returns the cached response to stmt, or ok false on a miss
	// (the statement then goes to the origin).
	Lookup(ctx context.Context, sess Session, stmt Statement) (res Result, ok bool)
	// Fill offers the origin's response to a statement Lookup missed.
	Fill(ctx context.Context, sess Session, stmt Statement, res Result)
	// Fence records that sess sent a write, so that its later reads see
	// it (read-your-writes).
	Fence(ctx context.Context, sess Session, stmt Statement)
}

// PassThrough is the Cache that caches nothing: every lookup misses, so a
// front end using it is a plain proxy to the origin.
type PassThrough struct{}

var _ Cache = PassThrough{}

// Lookup always misses.
func (PassThrough) Lookup(context.Context, Session, Statement) (Result, bool) { return Result{}, false }

// Fill drops the result.
func (PassThrough) Fill(context.Context, Session, Statement, Result) {}

// Fence does nothing: there is nothing to make consistent.
func (PassThrough) Fence(context.Context, Session, Statement) {}
