package postgres

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
)

// userFunction is a function or procedure written in SQL or a procedural
// language, as settingsFunctions reads it.
type userFunction struct {
	name    string
	body    string
	trigger bool // returns trigger or event_trigger
}

// loadSettingsFunctions finds the functions that may change a setting
// PostgreSQL does not report (analyze.Snapshot.MayChangeSettings). A
// function's own SET clause (proconfig) is restored when it returns and
// is not read; C and internal functions are taken not to.
func loadSettingsFunctions(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	// A SQL-standard body (BEGIN ATOMIC) is not in prosrc.
	rows, _ := tx.Query(ctx, `
		SELECT p.proname::text,
		       CASE WHEN p.prosrc = '' AND l.lanname = 'sql' THEN pg_catalog.pg_get_functiondef(p.oid) ELSE p.prosrc END,
		       p.prorettype IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_catalog.pg_language l ON l.oid = p.prolang
		WHERE p.prokind IN ('f', 'p') AND l.lanname NOT IN ('c', 'internal')
		  AND n.nspname NOT IN `+systemSchemas)
	var fns []userFunction
	var f userFunction
	_, err := pgx.ForEachRow(rows, []any{&f.name, &f.body, &f.trigger}, func() error {
		fns = append(fns, f)
		return nil
	})
	if err != nil {
		return err
	}
	d.SettingsFunctions, d.SettingsTriggers = settingsFunctions(fns)
	return nil
}

// settingsFunctions returns, sorted, the names of the functions of fns
// that may change an unreported setting (materialize.UnseenSettings) for
// the rest of the session, and whether one is a trigger function. By the
// words of its body, a function does when it calls set_config, runs a
// SET or RESET of such a setting (or SET SCHEMA, RESET ALL) — in its own
// text or a string it may EXECUTE — or of a setting named only when it
// runs (dynamicSet), or names a function that does. It is
// lexical and errs toward yes: an UPDATE ... SET role = ... counts too.
func settingsFunctions(fns []userFunction) (names []string, triggers bool) {
	words := make([]map[string]bool, len(fns))
	lower := make([]string, len(fns))
	flagged := map[string]bool{}
	for i, f := range fns {
		words[i], lower[i] = map[string]bool{}, strings.ToLower(f.name)
		if setsUnseen(f.body, words[i]) {
			flagged[lower[i]] = true
		}
	}
	// Callers of flagged functions, until none is added.
	for grew := true; grew; {
		grew = false
		for i := range fns {
			if !flagged[lower[i]] && calls(words[i], flagged) {
				flagged[lower[i]], grew = true, true
			}
		}
	}
	for i, f := range fns {
		triggers = triggers || f.trigger && flagged[lower[i]]
	}
	for n := range flagged {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, triggers
}

// calls reports whether a body's words name one of fns.
func calls(words, fns map[string]bool) bool {
	for w := range words {
		if fns[w] {
			return true
		}
	}
	return false
}

// dynamicSet is a SET or RESET that starts a string of dynamic SQL and
// whose setting is filled in when it runs: format('SET %I = %L', ...) or
// 'SET ' || name. Which setting it changes cannot be read, so it counts.
// A SET inside a dynamic statement (UPDATE %I SET %I = ...) does not.
var dynamicSet = regexp.MustCompile(`(?i)[';]\s*(?:set|reset)\s+(?:(?:session|local)\s+)?(?:%|'\s*\|\|)`)

// setsUnseen reports whether body changes an unreported setting, by its
// words, and collects its words into seen.
func setsUnseen(body string, seen map[string]bool) bool {
	found := dynamicSet.MatchString(body)
	var prev, prev2 string // the two words before
	analyze.Words(body, func(w string) bool {
		seen[w] = true
		switch {
		case w == "set_config":
			found = true
		case isSet(prev) && unseenSetting(w),
			isSet(prev2) && (prev == "session" || prev == "local") && unseenSetting(w),
			prev == "reset" && w == "all":
			found = true
		}
		prev2, prev = prev, w
		return true
	})
	return found
}

func isSet(w string) bool { return w == "set" || w == "reset" }

// unseenSetting reports a setting name (or SET SCHEMA's keyword) whose
// change PostgreSQL does not report.
func unseenSetting(w string) bool {
	return w == "schema" || slices.Contains(materialize.UnseenSettings, w)
}
