package analyze

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// selectNode walks a node that must be a SELECT (subqueries, CTE bodies).
func (a *analyzer) selectNode(n *pg_query.Node, parent *scope) error {
	s := n.GetSelectStmt()
	if s == nil {
		return reject(ReasonUnsupported, "subquery "+nodeName(n))
	}
	return a.selectStmt(s, parent)
}

// selectStmt walks one query block (or set operation).
func (a *analyzer) selectStmt(s *pg_query.SelectStmt, parent *scope) error {
	if err := a.enter(); err != nil {
		return err
	}
	defer a.leave()
	if s.IntoClause != nil {
		return reject(ReasonSelectInto, s.IntoClause.GetRel().GetRelname())
	}
	if len(s.LockingClause) > 0 {
		return reject(ReasonLockingClause, lockingName(s.LockingClause[0]))
	}
	sc := &scope{parent: parent}
	if err := a.with(s.WithClause, sc); err != nil {
		return err
	}
	if s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED {
		return a.setOperation(s, sc)
	}
	var conj []*pg_query.Node
	for _, f := range s.FromClause {
		if err := a.fromItem(f, sc, &conj); err != nil {
			return err
		}
	}
	if err := a.blockExprs(s, sc); err != nil {
		return err
	}
	conj = andChain(s.WhereClause, conj)
	a.predicates(conj, sc)
	return nil
}

func (a *analyzer) setOperation(s *pg_query.SelectStmt, sc *scope) error {
	if s.Larg == nil || s.Rarg == nil {
		return reject(ReasonUnsupported, "set operation without both sides")
	}
	if err := a.selectStmt(s.Larg, sc); err != nil {
		return err
	}
	if err := a.selectStmt(s.Rarg, sc); err != nil {
		return err
	}
	return a.blockExprs(s, &scope{parent: sc})
}

// blockExprs checks every expression of a block for functions, subqueries
// and syntax the cache cannot allow.
func (a *analyzer) blockExprs(s *pg_query.SelectStmt, sc *scope) error {
	lists := [][]*pg_query.Node{s.TargetList, s.GroupClause, s.WindowClause, s.SortClause, s.DistinctClause, s.ValuesLists}
	for _, l := range lists {
		if err := a.exprs(l, sc); err != nil {
			return err
		}
	}
	for _, n := range []*pg_query.Node{s.WhereClause, s.HavingClause, s.LimitOffset, s.LimitCount} {
		if err := a.expr(n, sc); err != nil {
			return err
		}
	}
	return nil
}

func (a *analyzer) with(w *pg_query.WithClause, sc *scope) error {
	if w == nil {
		return nil
	}
	for _, n := range w.Ctes {
		cte := n.GetCommonTableExpr()
		if cte == nil {
			return reject(ReasonUnsupported, "WITH item "+nodeName(n))
		}
		if cte.Ctequery.GetSelectStmt() == nil {
			return reject(ReasonDataModifyingCTE, cte.Ctename+": "+nodeName(cte.Ctequery))
		}
	}
	for _, n := range w.Ctes {
		cte := n.GetCommonTableExpr()
		if w.Recursive {
			sc.ctes = append(sc.ctes, cte.Ctename)
		}
		if err := a.selectNode(cte.Ctequery, sc); err != nil {
			return err
		}
		if !w.Recursive {
			sc.ctes = append(sc.ctes, cte.Ctename)
		}
	}
	return nil
}

// fromItem adds one FROM-clause entry to sc; the ON clauses of inner
// joins are appended to conj, as they restrict rows like WHERE does.
func (a *analyzer) fromItem(n *pg_query.Node, sc *scope, conj *[]*pg_query.Node) error {
	if err := a.enter(); err != nil {
		return err
	}
	defer a.leave()
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		return a.rangeVar(x.RangeVar, sc)
	case *pg_query.Node_RangeSubselect:
		if err := a.selectNode(x.RangeSubselect.Subquery, sc); err != nil {
			return err
		}
		sc.items = append(sc.items, &fromItem{name: x.RangeSubselect.GetAlias().GetAliasname()})
		return nil
	case *pg_query.Node_RangeFunction:
		return a.rangeFunction(x.RangeFunction, sc)
	case *pg_query.Node_JoinExpr:
		return a.join(x.JoinExpr, sc, conj)
	default:
		return reject(ReasonUnsupported, "FROM "+nodeName(n))
	}
}

func (a *analyzer) rangeVar(rv *pg_query.RangeVar, sc *scope) error {
	ref := rv.Relname
	if rv.Alias != nil {
		ref = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" && rv.Catalogname == "" && sc.isCTE(rv.Relname) {
		sc.items = append(sc.items, &fromItem{name: ref})
		return nil
	}
	rel, err := a.relation(rv)
	if err != nil {
		return err
	}
	if rel.Unlogged {
		return reject(ReasonNotReplicated, rel.QualifiedName()+" (unlogged)")
	}
	if rel.Unpublished && (rel.Kind == KindTable || rel.Kind == KindPartitioned) {
		return reject(ReasonNotReplicated, rel.QualifiedName()+" (not in the publication)")
	}
	switch rel.Kind {
	case KindTable, KindPartitioned:
		sc.items = append(sc.items, a.tableItem(rel, ref, rv))
		return nil
	case KindView:
		if err := a.view(rel); err != nil {
			return err
		}
		sc.items = append(sc.items, &fromItem{name: ref})
		return nil
	default:
		return reject(ReasonNotReplicated, fmt.Sprintf("%s (relkind %c)", rel.QualifiedName(), rel.Kind))
	}
}

func (a *analyzer) tableItem(rel *Relation, ref string, rv *pg_query.RangeVar) *fromItem {
	alias := ""
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	it := &fromItem{name: ref, rel: rel, scans: []int{len(a.res.Scans)}}
	a.res.Scans = append(a.res.Scans, Scan{Table: rel.QualifiedName(), Alias: alias})
	if !rv.Inh {
		return it
	}
	for _, child := range rel.Children {
		it.scans = append(it.scans, len(a.res.Scans))
		a.res.Scans = append(a.res.Scans, Scan{Table: child, Alias: alias, Via: rel.QualifiedName()})
	}
	return it
}

// view walks a view's definition in place of the view: its base tables
// become scans of this statement, and its functions are checked like the
// statement's own.
func (a *analyzer) view(rel *Relation) error {
	if a.viewDepth >= maxViewDepth {
		return reject(ReasonTooComplex, "views nested deeper than "+fmt.Sprint(maxViewDepth))
	}
	tree, err := pg_query.Parse(rel.Definition)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return reject(ReasonUnsupported, "view "+rel.QualifiedName()+" has no usable definition")
	}
	first := len(a.res.Scans)
	a.viewDepth++
	path := a.path
	a.path = []string{"pg_catalog"}
	err = a.selectStmt(tree.Stmts[0].GetStmt().GetSelectStmt(), nil)
	a.path = path
	a.viewDepth--
	if err != nil {
		return err
	}
	for i := first; i < len(a.res.Scans); i++ {
		if a.res.Scans[i].Via == "" {
			a.res.Scans[i].Via = rel.QualifiedName()
		}
	}
	return nil
}

func (a *analyzer) rangeFunction(rf *pg_query.RangeFunction, sc *scope) error {
	for _, f := range rf.Functions {
		items := f.GetList().GetItems()
		if len(items) == 0 {
			return reject(ReasonUnsupported, "FROM function "+nodeName(f))
		}
		if err := a.expr(items[0], sc); err != nil {
			return err
		}
	}
	sc.items = append(sc.items, &fromItem{name: rf.GetAlias().GetAliasname()})
	return nil
}

func (a *analyzer) join(j *pg_query.JoinExpr, sc *scope, conj *[]*pg_query.Node) error {
	var inner []*pg_query.Node
	left := len(sc.items)
	if err := a.fromItem(j.Larg, sc, &inner); err != nil {
		return err
	}
	right := len(sc.items)
	if err := a.fromItem(j.Rarg, sc, &inner); err != nil {
		return err
	}
	if err := a.expr(j.Quals, sc); err != nil {
		return err
	}
	a.usingJoins(j.UsingClause, sc.items[left:right], sc.items[right:])
	quals := andChain(j.Quals, nil)
	switch j.Jointype {
	case pg_query.JoinType_JOIN_INNER:
		*conj = append(*conj, inner...)
		*conj = append(*conj, quals...)
	default:
		// An outer join keeps the preserved side's rows whatever its ON
		// clause says, so the ON clause yields join pairs only. Inner
		// joins nested inside still restrict their own rows.
		*conj = append(*conj, inner...)
		a.joinPairs(quals, sc)
	}
	if j.Alias != nil {
		sc.items = append(sc.items, &fromItem{name: j.Alias.Aliasname})
	}
	return nil
}

func lockingName(n *pg_query.Node) string {
	lc := n.GetLockingClause()
	if lc == nil {
		return nodeName(n)
	}
	return lc.Strength.String()
}
