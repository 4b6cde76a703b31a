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
