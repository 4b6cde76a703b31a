package analyze

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func (a *analyzer) exprs(l []*pg_query.Node, sc *scope) error {
	for _, n := range l {
		if err := a.expr(n, sc); err != nil {
			return err
		}
	}
	return nil
}

// expr checks one expression. It is an allow-list: a node type not named
// here makes the statement uncacheable.
func (a *analyzer) expr(n *pg_query.Node, sc *scope) error {
	if n == nil || n.Node == nil {
		return nil
	}
	if err := a.enter(); err != nil {
		return err
	}
	defer a.leave()
	switch x := n.Node.(type) {
	case *pg_query.Node_ColumnRef, *pg_query.Node_ParamRef, *pg_query.Node_AStar,
		*pg_query.Node_Integer, *pg_query.Node_Float, *pg_query.Node_Boolean,
		*pg_query.Node_BitString, *pg_query.Node_String_:
		return nil
	case *pg_query.Node_AConst:
		return constant(x.AConst)
	case *pg_query.Node_TypeCast:
		return a.typeCast(x.TypeCast, sc)
	case *pg_query.Node_AExpr:
		return a.aExpr(x.AExpr, sc)
	case *pg_query.Node_FuncCall:
		return a.funcCall(x.FuncCall, sc)
	case *pg_query.Node_SubLink:
		if err := a.expr(x.SubLink.Testexpr, sc); err != nil {
			return err
		}
		return a.selectNode(x.SubLink.Subselect, sc)
	case *pg_query.Node_SqlvalueFunction:
		return reject(ReasonSQLValueFunction, strings.TrimPrefix(x.SqlvalueFunction.Op.String(), "SVFOP_"))
	default:
		return a.compound(n, sc)
	}
}

// compound checks the nodes that only combine other expressions.
func (a *analyzer) compound(n *pg_query.Node, sc *scope) error {
	switch x := n.Node.(type) {
	case *pg_query.Node_BoolExpr:
		return a.exprs(x.BoolExpr.Args, sc)
	case *pg_query.Node_NullTest:
		return a.expr(x.NullTest.Arg, sc)
	case *pg_query.Node_BooleanTest:
		return a.expr(x.BooleanTest.Arg, sc)
	case *pg_query.Node_CaseExpr:
		return a.all(sc, []*pg_query.Node{x.CaseExpr.Arg, x.CaseExpr.Defresult}, x.CaseExpr.Args)
	case *pg_query.Node_CaseWhen:
		return a.all(sc, []*pg_query.Node{x.CaseWhen.Expr, x.CaseWhen.Result})
	case *pg_query.Node_CoalesceExpr:
		return a.exprs(x.CoalesceExpr.Args, sc)
	case *pg_query.Node_MinMaxExpr:
		return a.exprs(x.MinMaxExpr.Args, sc)
	case *pg_query.Node_RowExpr:
		return a.exprs(x.RowExpr.Args, sc)
	case *pg_query.Node_AArrayExpr:
		return a.exprs(x.AArrayExpr.Elements, sc)
	case *pg_query.Node_AIndirection:
		return a.all(sc, []*pg_query.Node{x.AIndirection.Arg}, x.AIndirection.Indirection)
	case *pg_query.Node_AIndices:
		return a.all(sc, []*pg_query.Node{x.AIndices.Lidx, x.AIndices.Uidx})
	case *pg_query.Node_CollateClause:
		return a.expr(x.CollateClause.Arg, sc)
	case *pg_query.Node_List:
		return a.exprs(x.List.Items, sc)
	default:
		return a.clause(n, sc)
	}
}

// clause checks the parts of a block that are not expressions themselves.
func (a *analyzer) clause(n *pg_query.Node, sc *scope) error {
	switch x := n.Node.(type) {
	case *pg_query.Node_ResTarget:
		return a.all(sc, []*pg_query.Node{x.ResTarget.Val}, x.ResTarget.Indirection)
	case *pg_query.Node_SortBy:
		if err := a.operator(x.SortBy.UseOp); err != nil {
			return err
		}
		return a.expr(x.SortBy.Node, sc)
	case *pg_query.Node_GroupingSet:
		return a.exprs(x.GroupingSet.Content, sc)
	case *pg_query.Node_GroupingFunc:
		return a.exprs(x.GroupingFunc.Args, sc)
	case *pg_query.Node_NamedArgExpr:
		return a.expr(x.NamedArgExpr.Arg, sc)
	case *pg_query.Node_WindowDef:
		return a.window(x.WindowDef, sc)
	default:
		return reject(ReasonUnsupported, nodeName(n))
	}
}

func (a *analyzer) all(sc *scope, nodes []*pg_query.Node, lists ...[]*pg_query.Node) error {
	if err := a.exprs(nodes, sc); err != nil {
		return err
	}
	for _, l := range lists {
		if err := a.exprs(l, sc); err != nil {
			return err
		}
	}
	return nil
}

func (a *analyzer) window(w *pg_query.WindowDef, sc *scope) error {
	if w == nil {
		return nil
	}
	return a.all(sc, []*pg_query.Node{w.StartOffset, w.EndOffset}, w.PartitionClause, w.OrderClause)
}

func (a *analyzer) funcCall(f *pg_query.FuncCall, sc *scope) error {
	names := stringList(f.Funcname)
	nargs := len(f.Args)
	if f.AggStar {
		nargs = 0
	}
	v, err := a.functionVolatility(names, nargs)
	if err != nil {
		return err
	}
	if err := volatilityError(v, strings.Join(names, ".")); err != nil {
		return err
	}
	if err := a.all(sc, []*pg_query.Node{f.AggFilter}, f.Args, f.AggOrder); err != nil {
		return err
	}
	return a.window(f.Over, sc)
}

func volatilityError(v Volatility, what string) error {
	switch v {
	case Immutable:
		return nil
	case Stable:
		return reject(ReasonStableFunction, what)
	default:
		return reject(ReasonVolatileFunction, what)
	}
}

func (a *analyzer) aExpr(e *pg_query.A_Expr, sc *scope) error {
	if err := a.operator(e.Name); err != nil {
		return err
	}
	if err := a.expr(e.Lexpr, sc); err != nil {
		return err
	}
	return a.expr(e.Rexpr, sc)
}

func (a *analyzer) typeCast(tc *pg_query.TypeCast, sc *scope) error {
	t := typeName(tc.TypeName)
	if strings.HasPrefix(t, "reg") {
		// regclass, regproc, ...: the value depends on the catalog and
		// search_path at execution, not on any row.
		return reject(ReasonUnsupported, "cast to "+t)
	}
	return a.expr(tc.Arg, sc)
}

// constant refuses the special date/time inputs that read the clock.
func constant(c *pg_query.A_Const) error {
	s, ok := c.Val.(*pg_query.A_Const_Sval)
	if !ok || !mentionsClock(s.Sval.GetSval()) {
		return nil
	}
	return reject(ReasonTimeLiteral, s.Sval.GetSval())
}

// mentionsClock reports whether s holds one of the date/time input words
// that are evaluated when the statement runs ('now', 'today', 'tomorrow
// 10:00', ...). Any string literal counts: an untyped literal takes the
// type of the column it is compared with, which analysis does not know.
func mentionsClock(s string) bool {
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r < 'a' || r > 'z' }) {
		switch w {
		case "now", "today", "tomorrow", "yesterday":
			return true
		}
	}
	return false
}

// TimeDependentLiteral reports whether a parameter value could read the
// clock when bound to a date/time parameter; the caller should check bound
// text parameters of cacheable statements with it.
func TimeDependentLiteral(s string) bool { return mentionsClock(s) }

func stringList(l []*pg_query.Node) []string {
	out := make([]string, 0, len(l))
	for _, n := range l {
		out = append(out, n.GetString_().GetSval())
	}
	return out
}

// typeName is a cast's type name without schema, with [] for arrays.
func typeName(t *pg_query.TypeName) string {
	if t == nil {
		return ""
	}
	names := stringList(t.Names)
	if len(names) == 0 {
		return ""
	}
	s := names[len(names)-1]
	if len(t.ArrayBounds) > 0 {
		s += "[]"
	}
	return s
}

// operator refuses a user-defined operator whose function is not
// immutable. Built-in operators are immutable or depend only on settings
// that are part of the cache key (TimeZone, DateStyle).
func (a *analyzer) operator(name []*pg_query.Node) error {
	names := stringList(name)
	if len(names) == 0 {
		return nil
	}
	v, ok := a.cat.OperatorVolatility(names[len(names)-1])
	if !ok {
		return nil
	}
	return volatilityError(v, "operator "+strings.Join(names, "."))
}
