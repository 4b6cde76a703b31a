package pgwire

import (
	"bytes"
	"strings"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// A client may change some settings and still be answered from the
// cache. ORMs set several at connect (Rails: client_min_messages,
// standard_conforming_strings, intervalstyle, timezone; Django: the time
// zone), and a session that any SET made unknown would never be cached.
//
// keyedSettings are reported by the origin (GUC_REPORT): the change comes
// back as a ParameterStatus with the canonical value, which goes into the
// key (parameterStatus), so reads under the old and the new value never
// share an entry. inertSettings never change the bytes of a cacheable
// read's answer: they bound time, set log levels or tune plans, which may
// reorder rows only where the query did not ask for an order. Any other
// setting (search_path, role, extra_float_digits, bytea_output, a custom
// one that row security or a view may read, ...) makes the session
// unknown, as before.
var (
	keyedSettings = map[string]bool{
		"timezone": true, "datestyle": true, "intervalstyle": true,
		"client_encoding": true, "standard_conforming_strings": true,
	}
	inertSettings = map[string]bool{
		"application_name": true, "client_min_messages": true,
		"statement_timeout": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true,
		"idle_session_timeout": true, "work_mem": true, "jit": true, "synchronous_commit": true,
	}
	// reportedInert are ParameterStatus names that say nothing about the
	// bytes of an answer.
	reportedInert = map[string]bool{
		"application_name": true, "default_transaction_read_only": true, "in_hot_standby": true,
		"scram_iterations": true,
	}
)

// Why a session is no longer answered from the cache
// (freshet_pgwire_sessions_uncached_total's reasons).
const (
	uncachedSetting            = "setting"            // a SET or RESET the cache does not follow
	uncachedSetConfig          = "set_config"         // set_config(...)
	uncachedSessionState       = "session_state"      // DISCARD, PREPARE, DECLARE, LISTEN, ...
	uncachedTemporary          = "temporary_relation" // createsTemporary
	uncachedParameterStatus    = "parameter_status"   // the origin reported a setting not followed
	uncachedEncoding           = "encoding"           // a client encoding other than UTF-8, or nonstandard strings
	uncachedDuplicateStatement = "duplicate_statement"
	uncachedLargeStatement     = "large_statement"   // a Parse too large to look at
	uncachedSettingsFunction   = "settings_function" // a function of the origin's that may SET what is not reported
)

// mayChangeSettings reports a statement on its way to the origin that may
// change, through one of the origin's functions, a setting the front end
// cannot see (materialize.SettingsWatcher).
func (s *session) mayChangeSettings(st materialize.Statement) bool {
	return s.srv.settings != nil && s.srv.settings.MayChangeSettings(st)
}

// uncachedReason is uncachedBy(st), or else settings_function when st
// may run one of the origin's functions that sets what is not reported.
func (s *session) uncachedReason(st materialize.Statement) string {
	if reason := uncachedBy(st); reason != "" {
		return reason
	}
	if s.mayChangeSettings(st) {
		return uncachedSettingsFunction
	}
	return ""
}

// uncachedBy returns why the statement st makes its session unknown, or
// "" when it does not (a read, a write, a SET the cache follows). Each
// statement of a multi-statement text is judged (a SET behind a SELECT
// changes the session as much), and a SET of the search path there is not
// followed.
func uncachedBy(st materialize.Statement) string {
	if st.Multi {
		return uncachedByAny(st.SQL)
	}
	switch {
	case createsTemporary(st):
		return uncachedTemporary
	case changesSettings(st.SQL):
		return uncachedSetConfig
	case st.Class != materialize.ClassSessionState, keepsSessionKnown(st.SQL):
		return ""
	}
	if isKeyword(st, "SET", "RESET") {
		return uncachedSetting
	}
	return uncachedSessionState
}

// uncachedByAny judges each statement of sql, several of them.
func uncachedByAny(sql string) string {
	parts, ok := analyze.Statements(sql)
	if !ok {
		return "" // PostgreSQL runs none of them
	}
	for _, part := range parts {
		st := materialize.Classify(part)
		if _, _, ok := searchPathChange(st); ok {
			return uncachedSetting
		}
		if reason := uncachedBy(st); reason != "" {
			return reason
		}
	}
	return ""
}

// Bits of cacheState.unknown: which ones a session reset clears.
const (
	unknownState      uint32 = 1 << iota // settings, temporary tables, LISTEN...: DISCARD ALL's
	unknownStatements                    // prepared statements: DISCARD ALL's, DEALLOCATE ALL's
	unknownAtStartup                     // the connection's own: no reset clears it
)

// setUnknown makes the session unknown, counting why when it was not.
func (c *cacheState) setUnknown(reason string) {
	bit := unknownState
	if reason == uncachedDuplicateStatement || reason == uncachedLargeStatement {
		bit = unknownStatements
	}
	c.setUnknownBits(bit, reason)
}

func (c *cacheState) setUnknownBits(bits uint32, reason string) {
	if c.unknown.Or(bits) == 0 && c.uncached != nil {
		c.uncached(reason)
	}
}

// sessionReset is a session reset on its way to the origin.
type sessionReset struct{ statements bool }

// followReset follows a session reset (analyze.SessionReset) about to be
// sent as a simple Query by a session at rest in session mode (under
// transaction pooling it pins the session, which is then relayed only):
// when the origin has answered it without an error, the session is as at
// its start again (resetDone), and reads are answered from the cache
// again. Poolers in front of freshet (PgBouncer's server_reset_query) and
// drivers returning a connection to their pool (Npgsql, Rails) send one.
func (s *session) followReset(st materialize.Statement) bool {
	if s.tx != nil || !isKeyword(st, "DISCARD", "SET", "RESET") {
		return false
	}
	reset, statements := analyze.SessionReset(st.SQL)
	if !reset || !s.atRest() {
		return false
	}
	if statements {
		// Forgotten now, by the pump that owns them: should the reset
		// fail after all, their Binds are relayed, which is only slower.
		clear(s.cache.stmts)
	}
	s.cache.capture.Store(&capture{reset: &sessionReset{statements: statements}})
	return true
}

// resetDone ends a followed session reset at its ReadyForQuery: the
// settings are the startup ones again, the search path the role's, and
// what made the session unknown is cleared, prepared statements' part
// only when they were dropped too. The ParameterStatus messages the reset
// brought are the startup values again; an error leaves things as they
// were.
func (c *cacheState) resetDone(cp *capture, status byte) {
	if cp.errored || status != 'I' {
		return
	}
	c.published.Store(c.initial)
	bits := unknownState
	if cp.reset.statements {
		bits |= unknownStatements
	}
	c.unknown.And(^bits)
}

// keepsSessionKnown reports whether sql, a session-state statement, only
// changes settings the cache follows or need not.
func keepsSessionKnown(sql string) bool {
	name, ok := analyze.SettingChanged(sql)
	return ok && (keyedSettings[name] || inertSettings[name])
}

// parameterStatus follows a ParameterStatus (body after the header) from
// the origin: a keyed setting's new value goes into the key of the reads
// that follow; anything unknown makes the session unknown. Called by
// whichever pump relays the origin's messages.
func (c *cacheState) parameterStatus(body []byte) {
	name, val := parameterStatusFields(body)
	i, ok := keyedSetting(name)
	switch {
	case ok:
		next := *c.published.Load()
		next.settings[i] = val
		c.published.Store(&next)
		if !analyzable(name, val) {
			c.setUnknown(uncachedEncoding)
		}
	case !reportedInert[name]:
		c.setUnknown(uncachedParameterStatus)
	}
}

// parameterStatusFields reads a ParameterStatus body: a name and a value.
func parameterStatusFields(body []byte) (name, val string) {
	n, rest, _ := bytes.Cut(body, []byte{0})
	v, _, _ := bytes.Cut(rest, []byte{0})
	return string(n), string(v)
}

// keyedSetting is the key's Setting the origin reports as name.
func keyedSetting(name string) (cache.Setting, bool) {
	for i, s := range cache.SettingNames {
		if s == name {
			return cache.Setting(i), true
		}
	}
	return 0, false
}

// analyzable reports whether a session with setting name at val sends
// text that analysis reads as the origin does. The parser reads UTF-8
// with standard conforming strings; in another client encoding the
// constants and parameters it extracts are not the bytes the change
// stream carries (the origin converts them), so an update would not find
// the entries that depend on them.
func analyzable(name, val string) bool {
	switch name {
	case "client_encoding":
		return val == "UTF8"
	case "standard_conforming_strings":
		return val == "on"
	}
	return true
}

// publishedSettings are a session's output settings and search path as
// the origin's pump last saw them change. Never modified once published.
type publishedSettings struct {
	settings   cache.Settings
	searchPath []string // nil: the role's default
}

// syncSettings takes the settings the origin last reported into the
// request about to be looked up. The origin's pump publishes them before
// it relays the ReadyForQuery that the lookup waited for.
func (c *cacheState) syncSettings() {
	if p := c.published.Load(); &p.settings != c.req.Settings {
		c.req.Settings, c.req.SearchPath = &p.settings, p.searchPath
	}
}

// pathChange is a SET of the search path on its way to the origin.
type pathChange struct {
	path  []string
	value string
}

// searchPathChange reads st as a SET or RESET of the search path (the
// keyword is looked at first: the parser is not run on every query).
func searchPathChange(st materialize.Statement) (path []string, value string, ok bool) {
	if isKeyword(st, "SET", "RESET") {
		return analyze.SearchPathChange(st.SQL)
	}
	return nil, "", false
}

// isKeyword reports whether st begins with one of kws, in any case
// (without allocating: this runs on every Query).
func isKeyword(st materialize.Statement, kws ...string) bool {
	for _, kw := range kws {
		if strings.EqualFold(st.Keyword, kw) {
			return true
		}
	}
	return false
}

// followSearchPath follows a SET of the search path about to be sent:
// analysis resolves the session's table names through it, and it is in
// the key. It takes effect when the response says it did (searchPathSet);
// one sent inside a transaction, which may yet roll back, makes the
// session unknown instead.
func (s *session) followSearchPath(path []string, value string) {
	c := s.cache
	if !s.cacheIdle() {
		c.setUnknown(uncachedSetting)
		return
	}
	c.capture.Store(&capture{path: &pathChange{path: path, value: value}})
}

// searchPathSet ends a followed SET of the search path at its
// ReadyForQuery: applied when the origin answered it plainly, outside a
// transaction; anything else makes the session unknown.
func (c *cacheState) searchPathSet(cp *capture, status byte) {
	if cp.failed || status != 'I' {
		c.setUnknown(uncachedSetting)
		return
	}
	next := *c.published.Load()
	next.settings[cache.SearchPath] = cp.path.value
	next.searchPath = cp.path.path
	c.published.Store(&next)
}
