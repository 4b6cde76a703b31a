package materialize

import (
	"context"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
)

// Request is one read a wire front end offers to the cache: everything
// that decides whether it may be answered from the cache and which bytes
// answer it.
type Request struct {
	Database string
	Role     string
	SQL      string
	// Shape names the message sequence when it changes the response for
	// the same statement (extended protocol: whether ParseComplete and a
	// RowDescription are part of it); "" for a simple Query.
	Shape string
	// Params are the bound parameters (extended protocol).
	Params Params
	// ResultFormats are the Bind's result format codes.
	ResultFormats []int16
	// Settings are the session's output-affecting settings.
	Settings *cache.Settings
	// SearchPath is the session's search_path as analysis reads it; nil
	// for the default.
	SearchPath []string
	Tx         analyze.TxState
	Session    analyze.SessionState
	// FencePending is set by the front end when the session sent
	// anything that may have written since its last cacheable read;
	// Lookup then reads the origin's position (Config.Positions) into
	// Fence and clears it. Keep the Request per session.
	FencePending bool
	// Fence is the origin position the session's next cached read must
	// wait for; Lookup clears it once the watermark covers it.
	Fence schemas.Position

	keyCtx *keyContext // the last key context, see contextID
}

// Answer is the cache's response to a Request: exactly one of Entry (a
// hit: write Entry.Response() to the client as is), Ticket (a miss: send
// the request to the origin, capture the complete response and Put it,
// or Abandon the ticket on an error), or neither (Reason says why the
// request goes to the origin unfilled).
type Answer struct {
	Entry  *cache.Entry
	Ticket *Ticket
	Reason string
	// Cacheable reports that analysis found the statement a plain read
	// the cache may answer.
	Cacheable bool
	// ReadOnly reports that the statement cannot have written at the
	// origin, whatever the answer (every cacheable one, and reads such as
	// catalog queries): the session needs no read-your-writes fence.
	ReadOnly bool
}

// Lookup answers r. key is a scratch buffer for the encoded key, returned
// grown for reuse, so that a hit allocates nothing proportional to the
// request or the result.
func (m *Materializer) Lookup(ctx context.Context, r *Request, key []byte) (Answer, []byte) {
	res := m.analyzeRequest(r)
	a, key := m.lookup(ctx, r, res, key)
	m.observe(r, res, key, &a)
	return a, key
}

// analyzeRequest is the (memoized) analysis of r's statement in r's
// session.
func (m *Materializer) analyzeRequest(r *Request) *analyze.Result {
	sess := r.Session
	if m.sessionUnseen(r) {
		sess = analyze.SessionUnknown
	}
	return m.Analyze(analyze.Input{SQL: r.SQL, SearchPath: r.SearchPath, Role: r.Role, Tx: r.Tx, Session: sess})
}

// observe feeds an answer to the per-template statistics and to
// refresh-ahead's heat.
func (m *Materializer) observe(r *Request, res *analyze.Result, key []byte, a *Answer) {
	m.templates.record(res.Fingerprint, r.SQL, a)
	if m.refresh != nil {
		m.refresh.observe(m.cfg.Now, key, r, a)
	}
}

func (m *Materializer) lookup(ctx context.Context, r *Request, res *analyze.Result, key []byte) (Answer, []byte) {
	if !res.Cacheable {
		m.stats.bypass(string(res.Reason))
		m.metrics.bypassed(string(res.Reason))
		return Answer{Reason: string(res.Reason), ReadOnly: res.ReadOnly}, key
	}
	if timeDependentParams(&r.Params) {
		m.stats.bypass(BypassTimeLiteral)
		m.metrics.bypassed(BypassTimeLiteral)
		return Answer{Reason: BypassTimeLiteral, ReadOnly: true}, key
	}
	key = m.appendRequestKey(key[:0], r, res)
	if r.FencePending {
		if !m.resolveFence(ctx, r) {
			m.stats.bypass(BypassFence)
			m.metrics.bypassed(BypassFence)
			return Answer{Reason: BypassFence, Cacheable: true, ReadOnly: true}, key
		}
	}
	q := Query{Key: key, Analysis: res, Params: &r.Params, Fence: r.Fence}
	e, tk, reason := m.Get(ctx, &q)
	if !r.Fence.IsZero() && reason == "" {
		r.Fence = schemas.Position{} // the watermark covers it now
	}
	return Answer{Entry: e, Ticket: tk, Reason: reason, Cacheable: true, ReadOnly: true}, key
}

// appendRequestKey appends r's cache key to key: Lookup and LookupHit
// must key a request alike.
func (m *Materializer) appendRequestKey(key []byte, r *Request, res *analyze.Result) []byte {
	k := cache.Key{
		ContextID: m.contextID(r), StatementID: keyStatementID(r, res), Role: r.Role, Statement: r.SQL, Shape: r.Shape,
		ParamTypes: r.Params.Types, ParamFormats: r.Params.Formats, Params: r.Params.Values,
		ResultFormats: r.ResultFormats,
	}
	return cache.AppendKey(key, &k)
}

// resolveFence reads the origin's position after the session's writes
// into r.Fence; false when it cannot be read (the read then goes to the
// origin and the fence stays pending).
func (m *Materializer) resolveFence(ctx context.Context, r *Request) bool {
	if m.cfg.Positions == nil {
		r.FencePending = false
		return true
	}
	p, err := m.cfg.Positions.CurrentPosition(ctx)
	if err != nil {
		m.log.Warn("read-your-writes: cannot read the origin's position", "err", err)
		return false
	}
	if p.Compare(r.Fence) > 0 {
		r.Fence = p
	}
	r.FencePending = false
	return true
}

// timeDependentParams reports a text parameter such as 'now' or 'today'
// that a date/time input function would read as the clock.
func timeDependentParams(p *Params) bool {
	for i, v := range p.Values {
		if v != nil && p.format(i) == 0 && analyze.TimeDependentLiteral(string(v)) {
			return true
		}
	}
	return false
}
