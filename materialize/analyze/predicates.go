package analyze

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// predicateTypes are the column types whose equality is equality of one
// canonical form, so the dependency index can compare a value from the
// change stream with a constant or parameter exactly. Other types (float,
// numeric, citext, bpchar, timestamps, ...) give table-level dependencies.
var predicateTypes = map[string]bool{
	"int2": true, "int4": true, "int8": true, "oid": true,
	"text": true, "varchar": true, "name": true,
	"uuid": true, "bool": true, "date": true, "bytea": true,
}

// andChain appends the conjuncts of n's top-level AND chain to out.
func andChain(n *pg_query.Node, out []*pg_query.Node) []*pg_query.Node {
	if n == nil || n.Node == nil {
		return out
	}
	if b := n.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		for _, arg := range b.Args {
			out = andChain(arg, out)
		}
		return out
	}
	return append(out, n)
}

// predicates records the equality predicates and join pairs among conj,
// the conjuncts that restrict the rows of the block sc.
func (a *analyzer) predicates(conj []*pg_query.Node, sc *scope) {
	for _, c := range conj {
		if col, v, ok := booleanColumn(c); ok {
			a.addPredicate(col, []Value{{Const: v, Kind: "bool"}}, sc)
			continue
		}
		e := c.GetAExpr()
		if e == nil || !isEquals(e.Name) {
			continue
		}
		switch e.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP:
			a.equality(e.Lexpr, e.Rexpr, sc)
		case pg_query.A_Expr_Kind_AEXPR_IN:
			a.inList(e.Lexpr, e.Rexpr.GetList().GetItems(), sc)
		case pg_query.A_Expr_Kind_AEXPR_OP_ANY:
			a.anyArray(e.Lexpr, e.Rexpr, sc)
		}
	}
}

// joinPairs records only the join pairs among conj.
func (a *analyzer) joinPairs(conj []*pg_query.Node, sc *scope) {
	for _, c := range conj {
		if e := c.GetAExpr(); e != nil && isEquals(e.Name) && e.Kind == pg_query.A_Expr_Kind_AEXPR_OP {
			a.joinPair(e.Lexpr, e.Rexpr, sc)
		}
	}
}

func isEquals(name []*pg_query.Node) bool {
	return len(name) == 1 && name[0].GetString_().GetSval() == "="
}

func (a *analyzer) equality(l, r *pg_query.Node, sc *scope) {
	if a.joinPair(l, r, sc) {
		return
	}
	if v, ok := value(r); ok {
		a.addPredicate(l, []Value{v}, sc)
	} else if v, ok := value(l); ok {
		a.addPredicate(r, []Value{v}, sc)
	}
}

func (a *analyzer) inList(l *pg_query.Node, items []*pg_query.Node, sc *scope) {
	vals := make([]Value, 0, len(items))
	for _, it := range items {
		v, ok := value(it)
		if !ok {
			return
		}
		vals = append(vals, v)
	}
	if len(vals) > 0 {
		a.addPredicate(l, vals, sc)
	}
}

// anyArray handles col = ANY($n) and col = ANY(ARRAY[...]).
func (a *analyzer) anyArray(l, r *pg_query.Node, sc *scope) {
	if arr := r.GetAArrayExpr(); arr != nil {
		a.inList(l, arr.Elements, sc)
		return
	}
	v, ok := value(r)
	if ok && v.Param > 0 {
		v.Array = true
		a.addPredicate(l, []Value{v}, sc)
	}
}

// joinPair records l = r when both are columns of different base-table
// items of this block.
func (a *analyzer) joinPair(l, r *pg_query.Node, sc *scope) bool {
	li, lc, lok := column(l, sc)
	ri, rc, rok := column(r, sc)
	if !lok || !rok {
		return false
	}
	if li != ri {
		a.res.Joins = append(a.res.Joins, Join{
			Left:  ColumnRef{Scan: li.scans[0], Table: li.rel.QualifiedName(), Column: lc},
			Right: ColumnRef{Scan: ri.scans[0], Table: ri.rel.QualifiedName(), Column: rc},
		})
	}
	return true
}

func (a *analyzer) addPredicate(col *pg_query.Node, vals []Value, sc *scope) {
	it, name, ok := column(col, sc)
	if !ok {
		return
	}
	c, _ := it.rel.column(name)
	if !predicateTypes[c.Type] || c.NondeterministicCollation {
		return
	}
	for _, v := range vals {
		if !comparesAs(c.Type, v) {
			return
		}
	}
	p := Predicate{Column: name, Type: c.Type, Values: vals}
	for _, i := range it.scans {
		a.res.Scans[i].Predicates = append(a.res.Scans[i].Predicates, p)
	}
}

// column resolves a column reference to a base-table item of this block.
func column(n *pg_query.Node, sc *scope) (*fromItem, string, bool) {
	cr := n.GetColumnRef()
	if cr == nil {
		return nil, "", false
	}
	f := cr.Fields
	for _, x := range f {
		if x.GetString_() == nil {
			return nil, "", false
		}
	}
	var it *fromItem
	switch len(f) {
	case 1:
		it = sc.withColumn(f[0].GetString_().Sval)
	case 2:
		it = sc.byName(f[0].GetString_().Sval)
	case 3:
		it = sc.byRelation(f[0].GetString_().Sval, f[1].GetString_().Sval)
	}
	if it == nil || it.rel == nil {
		return nil, "", false
	}
	name := f[len(f)-1].GetString_().Sval
	if _, ok := it.rel.column(name); !ok {
		return nil, "", false
	}
	return it, name, true
}

// value reads a constant or parameter, through explicit casts.
func value(n *pg_query.Node) (Value, bool) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ParamRef:
		return Value{Param: int(x.ParamRef.Number)}, x.ParamRef.Number > 0
	case *pg_query.Node_TypeCast:
		v, ok := value(x.TypeCast.Arg)
		if ok && v.Cast == "" {
			v.Cast = typeName(x.TypeCast.TypeName)
		}
		return v, ok
	case *pg_query.Node_AConst:
		return constValue(x.AConst)
	}
	return Value{}, false
}

func constValue(c *pg_query.A_Const) (Value, bool) {
	if c.Isnull {
		return Value{}, false
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return Value{Const: strconv.Itoa(int(v.Ival.GetIval())), Kind: "integer"}, true
	case *pg_query.A_Const_Fval:
		return Value{Const: v.Fval.GetFval(), Kind: "float"}, true
	case *pg_query.A_Const_Sval:
		return Value{Const: v.Sval.GetSval(), Kind: "string"}, true
	case *pg_query.A_Const_Boolval:
		return Value{Const: strconv.FormatBool(v.Boolval.GetBoolval()), Kind: "bool"}, true
	case *pg_query.A_Const_Bsval:
		return Value{Const: v.Bsval.GetBsval(), Kind: "bitstring"}, true
	}
	return Value{}, false
}

// usingJoins records JOIN ... USING (cols) as join pairs when each side
// has exactly one base table with the column.
func (a *analyzer) usingJoins(cols []*pg_query.Node, left, right []*fromItem) {
	for _, c := range stringList(cols) {
		l := (&scope{items: left}).withColumn(c)
		r := (&scope{items: right}).withColumn(c)
		if l != nil && r != nil {
			a.res.Joins = append(a.res.Joins, Join{
				Left:  ColumnRef{Scan: l.scans[0], Table: l.rel.QualifiedName(), Column: c},
				Right: ColumnRef{Scan: r.scans[0], Table: r.rel.QualifiedName(), Column: c},
			})
		}
	}
}

// family groups the predicate types whose values compare within one
// domain: an int4 column against an int8 value is still integer equality.
func family(t string) string {
	switch t {
	case "int2", "int4", "int8", "oid":
		return "integer"
	case "text", "varchar", "name":
		return "text"
	}
	return t
}

// comparesAs reports whether comparing a column of type col with v is
// equality within the column's own type family. A float literal against
// an integer column, or a value cast to another family, makes PostgreSQL
// compare in a different type (int4 = numeric: 1 = 1.0), which the
// dependency index would have to reproduce; such predicates are dropped.
func comparesAs(col string, v Value) bool {
	if v.Cast != "" {
		return family(strings.TrimSuffix(v.Cast, "[]")) == family(col)
	}
	switch v.Kind {
	case "", "string": // a parameter or an untyped literal takes the column's type
		return true
	case "integer":
		return family(col) == "integer"
	case "bool":
		return col == "bool"
	}
	return false
}

// booleanColumn reads the boolean tests of a column that filter like
// equalities: `col` and `col IS TRUE` keep only true rows, `NOT col` and
// `col IS FALSE` only false ones (NULL is dropped by all four).
func booleanColumn(n *pg_query.Node) (*pg_query.Node, string, bool) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		return n, "true", true
	case *pg_query.Node_BoolExpr:
		if x.BoolExpr.Boolop == pg_query.BoolExprType_NOT_EXPR && len(x.BoolExpr.Args) == 1 && x.BoolExpr.Args[0].GetColumnRef() != nil {
			return x.BoolExpr.Args[0], "false", true
		}
	case *pg_query.Node_BooleanTest:
		if x.BooleanTest.Arg.GetColumnRef() == nil {
			return nil, "", false
		}
		switch x.BooleanTest.Booltesttype {
		case pg_query.BoolTestType_IS_TRUE:
			return x.BooleanTest.Arg, "true", true
		case pg_query.BoolTestType_IS_FALSE:
			return x.BooleanTest.Arg, "false", true
		}
	}
	return nil, "", false
}
