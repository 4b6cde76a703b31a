package analyze

import (
	"slices"
	"strings"
)

// settingsFunctions are the origin's functions that may change, for the
// rest of the session, a setting PostgreSQL does not report (search_path,
// role, bytea_output, ...; the loader decides which, from their bodies):
// a session that runs one has settings the front end cannot see.
type settingsFunctions struct {
	names map[string]bool // lower-cased, unqualified
	// triggers: one of them is a trigger or event trigger function, so
	// any statement that may write or run DDL may run it.
	triggers bool
}

func newSettingsFunctions(names []string, triggers bool) settingsFunctions {
	sf := settingsFunctions{triggers: triggers}
	if len(names) > 0 {
		sf.names = make(map[string]bool, len(names))
		for _, n := range names {
			sf.names[strings.ToLower(n)] = true
		}
	}
	return sf
}

// MayChangeSettings reports whether running sql at the origin may change
// a setting the front end cannot see, through one of the origin's
// functions: sql names one (by its unqualified name, in any case,
// anywhere in the text), or such a function is a trigger and mayFire
// says sql may fire triggers (asked only then: most origins have none).
// False positives only cost caching; a false negative is a wrong answer.
func (s *Snapshot) MayChangeSettings(sql string, mayFire func() bool) bool {
	sf := &s.settings
	if sf.triggers && mayFire() {
		return true
	}
	if len(sf.names) == 0 {
		return false
	}
	return AnyWord(sql, sf.names)
}

// SettingsFunctions returns the names MayChangeSettings looks for,
// sorted, and whether one of them is a trigger function.
func (s *Snapshot) SettingsFunctions() ([]string, bool) {
	names := make([]string, 0, len(s.settings.names))
	for n := range s.settings.names {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, s.settings.triggers
}
