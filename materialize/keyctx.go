package materialize

import (
	"strings"
	"sync"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// keyContext is what a cache key holds about a session, its database and
// output settings, under an ID the key carries instead (cache.Key's
// ContextID): the values are ~50 bytes that every key would otherwise
// repeat. It is immutable.
type keyContext struct {
	database string
	settings cache.Settings
	id       uint64
}

// matches reports whether r has c's values.
func (c *keyContext) matches(r *Request) bool {
	if c.database != r.Database {
		return false
	}
	if r.Settings == nil {
		return c.settings == cache.Settings{}
	}
	return c.settings == *r.Settings
}

// maxKeyContexts bounds the table; past it the table is emptied. Contexts
// interned before keep their IDs, which are never given to other values:
// a context interned again under a new ID only misses the entries of the
// old one, which age out.
const maxKeyContexts = 4096

// keyContexts interns key contexts. IDs start at 1 and are never reused.
type keyContexts struct {
	mu     sync.Mutex
	byVals map[keyContextVals]*keyContext
	last   uint64
}

type keyContextVals struct {
	database string
	settings cache.Settings
}

// keyStatementID is the ID a key carries in place of the statement's text:
// only for a statement with parameters, whose one text is shared by the
// keys of all its parameter values. A text without parameters has one
// entry per session context anyway, and such texts (literals inlined) are
// too many to stay in the analysis memo: keyed by an ID, every time the
// memo is emptied their entries would be orphaned. Keyed by the text, they
// survive it.
func keyStatementID(r *Request, res *analyze.Result) uint64 {
	if len(r.Params.Values) == 0 {
		return 0
	}
	return res.StatementID
}

// contextID returns the ID of r's database and settings. The context is
// remembered in r (a session's Request), so that a session's lookups
// compare its values instead of hashing them into the table.
func (m *Materializer) contextID(r *Request) uint64 {
	if c := r.keyCtx; c != nil && c.matches(r) {
		return c.id
	}
	r.keyCtx = m.keyCtxs.intern(r)
	return r.keyCtx.id
}

func (t *keyContexts) intern(r *Request) *keyContext {
	v := keyContextVals{database: r.Database}
	if r.Settings != nil {
		v.settings = *r.Settings
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.byVals[v]; c != nil {
		return c
	}
	if t.byVals == nil || len(t.byVals) >= maxKeyContexts {
		t.byVals = map[keyContextVals]*keyContext{}
	}
	t.last++
	// The values may alias a front end's buffers: keep copies.
	c := &keyContext{database: strings.Clone(v.database), id: t.last}
	for i, s := range v.settings {
		c.settings[i] = strings.Clone(s)
	}
	t.byVals[keyContextVals{database: c.database, settings: c.settings}] = c
	return c
}
