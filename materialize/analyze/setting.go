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
