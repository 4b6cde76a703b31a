package analyze

import (
	"fmt"
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TxState is the session's transaction state at execution.
type TxState int

// Transaction states. Only TxNone and TxReadOnly at READ COMMITTED may be
// answered from the cache.
const (
	TxNone      TxState = iota // autocommit: each statement is its own transaction
	TxReadOnly                 // explicit READ ONLY transaction at READ COMMITTED
	TxReadWrite                // explicit read-write transaction: its writes are invisible to the cache
	TxSnapshot                 // REPEATABLE READ or SERIALIZABLE: one snapshot for all statements
)

// SessionState says whether every session setting that changes output is
// known to the caller (and so part of the cache key), and whether the
// session is free of temporary objects: a temp table created after the
// catalog was loaded can shadow a cached table's name, so a session that
// created one must report SessionUnknown.
type SessionState int

// Session states; the zero value is the safe one.
const (
	SessionUnknown SessionState = iota
	SessionKnown
)

// Input is one statement and the session it runs in.
type Input struct {
	// SQL is the statement text, with $n parameters.
	SQL string
	// SearchPath is the session's search_path, one unquoted schema name
	// per element, "$user" allowed; nil means the default "$user", public.
	SearchPath []string
	// Role replaces "$user" in SearchPath.
	Role    string
	Tx      TxState
	Session SessionState
}

// maxDepth bounds the nesting of expressions and subqueries walked.
const maxDepth = 500

// maxViewDepth bounds the nesting of views expanded.
const maxViewDepth = 32

// Analyze returns the verdict on in.SQL. The statement-level part of the
// result depends only on SQL, SearchPath, Role and the catalog, so callers
// may keep it per statement and apply [Admit] per execution. A nil cat is
// an empty catalog: nothing that reads a table or calls a function is
// cacheable.
func Analyze(in Input, cat Catalog) Result {
	if strings.IndexByte(in.SQL, 0) >= 0 {
		// The parser reads a C string and would stop at the NUL; the
		// wire protocol cannot carry one either.
		return Result{Reason: ReasonSyntaxError, Detail: "statement contains a NUL byte"}
	}
	tree, err := pg_query.Parse(in.SQL)
	if err != nil {
		return Result{Reason: ReasonSyntaxError, Detail: err.Error()}
	}
	if cat == nil {
		cat = NewSnapshot(SnapshotData{})
	}
	var res Result
	if fp, err := pg_query.FingerprintToUInt64(in.SQL); err == nil {
		res.Fingerprint = fp
	}
	a := &analyzer{cat: cat, path: effectivePath(in.SearchPath, in.Role, cat), res: &res}
	if r, ok := Admit(in.Tx, in.Session); !ok {
		res.Reason, res.ReadOnly = r, a.readOnly(tree)
		return res
	}
	if err := a.statement(tree); err != nil {
		res.ReadOnly = a.readOnly(tree)
		return res.rejected(err)
	}
	// What the cache may answer passed every check readOnly makes.
	res.Cacheable, res.ReadOnly = true, true
	res.Tables = a.tables()
	return res
}

// Admit is the per-execution part of the verdict: whether a statement that
// is cacheable may be answered from the cache in this session state.
func Admit(tx TxState, s SessionState) (Reason, bool) {
	switch {
	case s != SessionKnown:
		return ReasonSessionState, false
	case tx == TxReadWrite:
		return ReasonReadWriteTx, false
	case tx == TxSnapshot:
		return ReasonSnapshotTx, false
	case tx != TxNone && tx != TxReadOnly:
		return ReasonSessionState, false
	}
	return "", true
}

func (r Result) rejected(err error) Result {
	rej, ok := err.(*rejection)
	if !ok {
		rej = &rejection{ReasonUnsupported, err.Error()}
	}
	return Result{Reason: rej.reason, Detail: rej.detail, Fingerprint: r.Fingerprint, ReadOnly: r.ReadOnly}
}

type analyzer struct {
	cat       Catalog
	path      []string
	res       *Result
	depth     int
	viewDepth int
}

func (a *analyzer) statement(tree *pg_query.ParseResult) error {
	switch len(tree.Stmts) {
	case 0:
		return reject(ReasonEmpty, "")
	case 1:
	default:
		return reject(ReasonMultipleStatements, fmt.Sprintf("%d statements", len(tree.Stmts)))
	}
	n := tree.Stmts[0].GetStmt()
	s := n.GetSelectStmt()
	if s == nil {
		return reject(ReasonNotSelect, nodeName(n))
	}
	return a.selectStmt(s, nil)
}

func (a *analyzer) tables() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range a.res.Scans {
		if !seen[s.Table] {
			seen[s.Table] = true
			out = append(out, s.Table)
		}
	}
	sort.Strings(out)
	return out
}

// nodeName is the parse node's type name, as PostgreSQL calls it.
func nodeName(n *pg_query.Node) string {
	if n == nil || n.Node == nil {
		return "nil"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_")
}

// enter guards recursion depth; the caller must call a.leave().
func (a *analyzer) enter() error {
	a.depth++
	if a.depth > maxDepth {
		return reject(ReasonTooComplex, fmt.Sprintf("nesting deeper than %d", maxDepth))
	}
	return nil
}

func (a *analyzer) leave() { a.depth-- }
