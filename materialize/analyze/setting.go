package analyze

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// SettingChanged returns the setting, in lower case, that sql changes for
// the rest of the session when sql is one SET or RESET of one setting
// (SET TIME ZONE and SET NAMES name theirs: timezone, client_encoding).
// It is not ok for anything else: SET LOCAL (undone at the transaction's
// end), RESET ALL, SET TRANSACTION or SESSION CHARACTERISTICS, several
// statements, or text that does not parse.
func SettingChanged(sql string) (name string, ok bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	set := tree.Stmts[0].GetStmt().GetVariableSetStmt()
	if set == nil || set.IsLocal || set.Name == "" {
		return "", false
	}
	switch set.Kind {
	case pg_query.VariableSetKind_VAR_SET_VALUE, pg_query.VariableSetKind_VAR_SET_DEFAULT,
		pg_query.VariableSetKind_VAR_SET_CURRENT, pg_query.VariableSetKind_VAR_RESET:
		return strings.ToLower(set.Name), true
	}
	return "", false
}

// SearchPathChange reads sql as one SET or RESET of the session's
// search_path (SET SCHEMA included), as PostgreSQL applies it: each
// argument is one schema name exactly as written (an unquoted one folded
// to lower case, a string literal taken whole: SET search_path = 'a, b'
// names one schema, "a, b"), "$user" standing for the role. path is nil
// for the default (RESET, DEFAULT). value is the setting's text with
// every name quoted, for the cache key and for set_config. It is not ok
// for anything else, SET LOCAL and FROM CURRENT included.
func SearchPathChange(sql string) (path []string, value string, ok bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return nil, "", false
	}
	set := tree.Stmts[0].GetStmt().GetVariableSetStmt()
	if set == nil || set.IsLocal || strings.ToLower(set.Name) != "search_path" {
		return nil, "", false
	}
	switch set.Kind {
	case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
		return nil, "", true
	case pg_query.VariableSetKind_VAR_SET_VALUE:
	default:
		return nil, "", false
	}
	quoted := make([]string, 0, len(set.Args))
	for _, a := range set.Args {
		s := a.GetAConst().GetSval()
		if s == nil {
			return nil, "", false
		}
		path = append(path, s.Sval)
		quoted = append(quoted, `"`+strings.ReplaceAll(s.Sval, `"`, `""`)+`"`)
	}
	if len(path) == 0 {
		return nil, "", false
	}
	return path, strings.Join(quoted, ", "), true
}

// Statements splits sql into its statements as PostgreSQL parses it; not
// ok when it does not parse (PostgreSQL then runs none of them).
func Statements(sql string) ([]string, bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, false
	}
	out := make([]string, 0, len(tree.Stmts))
	for _, s := range tree.Stmts {
		start, n := int(s.StmtLocation), int(s.StmtLen)
		if start < 0 || start > len(sql) {
			return nil, false
		}
		end := len(sql)
		if n > 0 && start+n <= len(sql) {
			end = start + n
		}
		out = append(out, sql[start:end])
	}
	return out, true
}

// SessionReset reports whether sql returns a session's settings,
// authorization and temporary tables to their state at connection: DISCARD
// ALL (what PgBouncer and Rails send), or its parts as Npgsql sends them
// when it keeps prepared statements (SET SESSION AUTHORIZATION DEFAULT;
// RESET ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all();
// DISCARD SEQUENCES; DISCARD TEMP). statements reports that prepared
// statements were dropped too (DISCARD ALL, DEALLOCATE ALL). Any other
// statement among them makes it no reset.
func SessionReset(sql string) (reset, statements bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) == 0 {
		return false, false
	}
	var all, settings, auth, temp bool
	for _, raw := range tree.Stmts {
		n := raw.GetStmt()
		switch {
		case n.GetDiscardStmt() != nil:
			switch n.GetDiscardStmt().Target {
			case pg_query.DiscardMode_DISCARD_ALL:
				all = true
			case pg_query.DiscardMode_DISCARD_TEMP:
				temp = true
			}
		case n.GetVariableSetStmt() != nil:
			set := n.GetVariableSetStmt()
			switch {
			case set.IsLocal:
				return false, false
			case set.Kind == pg_query.VariableSetKind_VAR_RESET_ALL:
				settings = true
			case set.Name == "session_authorization" &&
				(set.Kind == pg_query.VariableSetKind_VAR_SET_DEFAULT || set.Kind == pg_query.VariableSetKind_VAR_RESET):
				auth = true
			default:
				return false, false
			}
		case n.GetDeallocateStmt() != nil && n.GetDeallocateStmt().Name == "":
			statements = true
		case n.GetClosePortalStmt() != nil && n.GetClosePortalStmt().Portalname == "",
			n.GetUnlistenStmt() != nil && n.GetUnlistenStmt().Conditionname == "",
			unlocksAdvisory(n.GetSelectStmt()):
		default:
			return false, false
		}
	}
	return all || settings && auth && temp, all || statements
}

// unlocksAdvisory reports SELECT pg_advisory_unlock_all() and nothing else.
func unlocksAdvisory(s *pg_query.SelectStmt) bool {
	if s == nil || len(s.TargetList) != 1 || len(s.FromClause) != 0 || s.WhereClause != nil {
		return false
	}
	fc := s.TargetList[0].GetResTarget().GetVal().GetFuncCall()
	if fc == nil || len(fc.Args) != 0 {
		return false
	}
	name := fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval()
	return name == "pg_advisory_unlock_all" && (len(fc.Funcname) == 1 || fc.Funcname[0].GetString_().GetSval() == "pg_catalog")
}
