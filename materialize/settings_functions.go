package materialize

import (
	"strings"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// SettingsWatcher is implemented by a Cache that knows which statements
// may change, through the origin's own functions, a setting PostgreSQL
// does not report (UnseenSettings): a function that runs SET search_path
// or calls set_config, called by name or by a trigger. The front end asks
// it about every statement it sends to the origin and no longer answers
// the session from the cache when it says yes; PassThrough caches nothing
// and does not implement it.
type SettingsWatcher interface {
	MayChangeSettings(st Statement) bool
}

var _ SettingsWatcher = (*Materializer)(nil)

// MayChangeSettings implements SettingsWatcher against the current
// catalog. Without a loaded catalog it says no: nothing is cached then.
func (m *Materializer) MayChangeSettings(st Statement) bool {
	s, _, ok := unwrapCatalog(m.memo.Load().cat)
	if !ok || s == nil {
		return false
	}
	return s.MayChangeSettings(st.SQL, func() bool { return mayFireTriggers(st) })
}

// mayFireTriggers reports, by its class and words, a statement that may
// write (and so fire a trigger), run DDL (an event trigger), or fire
// deferred triggers (COMMIT, SET CONSTRAINTS).
func mayFireTriggers(st Statement) bool {
	switch {
	case st.Multi, st.Class == ClassWrite:
		return true
	case st.Class == ClassTxControl:
		return strings.EqualFold(st.Keyword, "COMMIT") || strings.EqualFold(st.Keyword, "END")
	}
	return analyze.AnyWord(st.SQL, writeWords)
}

// writeWords are the words of a statement that may write or fire
// deferred triggers whatever its class says.
var writeWords = map[string]bool{
	"insert": true, "update": true, "delete": true, "merge": true, "copy": true, "truncate": true,
	"call": true, "execute": true, "constraints": true,
}
