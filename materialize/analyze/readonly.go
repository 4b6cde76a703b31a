package analyze

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// readOnly reports whether the statement cannot change the database: one
// SELECT with no INTO, no locking clause and no data-modifying WITH
// anywhere, whose function calls and operators resolve only to immutable
// or stable functions (PostgreSQL runs those in read-only mode), and
// whose relations are tables, system relations, or views that are read
// only themselves. Anything not known — an unknown function or relation,
// a temporary one (it may be a view) — counts as a write.
//
// It is a walk of its own over every node of the tree, not a part of the
// cacheability walk, which stops at its first reason: a catalog read
// that calls now() must still be found read only. A session's reads that
// write nothing need no read-your-writes fence.
func (a *analyzer) readOnly(tree *pg_query.ParseResult) bool {
	if len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return false
	}
	ro := &readOnlyWalk{a: a, ctes: map[string]bool{}}
	stmt := tree.Stmts[0].GetStmt().ProtoReflect()
	ro.collectCTEs(stmt, 0)
	return ro.message(stmt, 0)
}

type readOnlyWalk struct {
	a         *analyzer
	ctes      map[string]bool // every WITH name in the statement
	viewDepth int
}

// maxReadOnlyDepth bounds the walk: a node of the tree and its wrapper
// are two levels.
const maxReadOnlyDepth = 4 * maxDepth

// each calls f on every message directly inside m, until f returns false;
// it reports whether f never did.
func each(m protoreflect.Message, f func(protoreflect.Message) bool) bool {
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		if !fd.IsList() {
			ok = f(v.Message())
			return ok
		}
		l := v.List()
		for i := 0; i < l.Len() && ok; i++ {
			ok = f(l.Get(i).Message())
		}
		return ok
	})
	return ok
}

func (ro *readOnlyWalk) collectCTEs(m protoreflect.Message, depth int) bool {
	if depth > maxReadOnlyDepth {
		return false
	}
	if cte, ok := m.Interface().(*pg_query.CommonTableExpr); ok {
		ro.ctes[cte.Ctename] = true
	}
	return each(m, func(c protoreflect.Message) bool { return ro.collectCTEs(c, depth+1) })
}

func (ro *readOnlyWalk) message(m protoreflect.Message, depth int) bool {
	if depth > maxReadOnlyDepth || !ro.node(m.Interface()) {
		return false
	}
	return each(m, func(c protoreflect.Message) bool { return ro.message(c, depth+1) })
}

// node judges one node by itself; its children are walked by message.
func (ro *readOnlyWalk) node(n any) bool {
	switch x := n.(type) {
	case *pg_query.IntoClause, *pg_query.LockingClause:
		return false
	case *pg_query.CommonTableExpr:
		return x.Ctequery.GetSelectStmt() != nil
	case *pg_query.FuncCall:
		nargs := len(x.Args)
		if x.AggStar {
			nargs = 0
		}
		v, err := ro.a.functionVolatility(stringList(x.Funcname), nargs)
		return err == nil && !v.worse(Stable)
	case *pg_query.A_Expr:
		return ro.operator(x.Name)
	case *pg_query.SortBy:
		return ro.operator(x.UseOp)
	case *pg_query.SubLink:
		return ro.operator(x.OperName)
	case *pg_query.RangeVar:
		return ro.relation(x)
	}
	return true
}

// operator judges an operator by name (as analyzer.operator does: only
// user-defined operators are in the catalog).
func (ro *readOnlyWalk) operator(name []*pg_query.Node) bool {
	names := stringList(name)
	if len(names) == 0 {
		return true
	}
	v, ok := ro.a.cat.OperatorVolatility(names[len(names)-1])
	return !ok || !v.worse(Stable)
}

// relation judges a relation read in the statement.
func (ro *readOnlyWalk) relation(rv *pg_query.RangeVar) bool {
	if rv.Catalogname != "" {
		return false
	}
	rel, found := ro.find(rv.Schemaname, rv.Relname)
	switch {
	case !found:
		// A WITH name is walked where it is defined. Anything else
		// is unknown here, or temporary: either may be a view.
		return rv.Schemaname == "" && ro.ctes[rv.Relname] && !ro.a.cat.TempRelationNamed(rv.Relname)
	case rel.Kind != KindView || isSystemSchema(rel.Schema):
		// PostgreSQL's own views write nothing.
		return true
	}
	return ro.view(rel)
}

// find resolves a relation name as PostgreSQL would, temporary relations
// aside (not found).
func (ro *readOnlyWalk) find(schema, name string) (*Relation, bool) {
	if schema != "" {
		if isTempSchema(schema) {
			return nil, false
		}
		return ro.a.cat.Relation(schema, name)
	}
	if ro.a.cat.TempRelationNamed(name) {
		return nil, false
	}
	for _, s := range ro.a.path {
		if rel, ok := ro.a.cat.Relation(s, name); ok {
			return rel, true
		}
	}
	return nil, false
}

// view judges a view by its definition, whose names pg_get_viewdef
// qualifies as needed (see analyzer.view).
func (ro *readOnlyWalk) view(rel *Relation) bool {
	if ro.viewDepth >= maxViewDepth || rel.Definition == "" {
		return false
	}
	tree, err := pg_query.Parse(rel.Definition)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return false
	}
	path, ctes := ro.a.path, ro.ctes
	ro.a.path, ro.ctes = []string{"pg_catalog"}, map[string]bool{}
	ro.viewDepth++
	stmt := tree.Stmts[0].GetStmt().ProtoReflect()
	ok := ro.collectCTEs(stmt, 0) && ro.message(stmt, 0)
	ro.viewDepth--
	ro.a.path, ro.ctes = path, ctes
	return ok
}
