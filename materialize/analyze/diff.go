package analyze

import "reflect"

// ChangedRelations compares two catalogs. When they differ only in
// relations that are not views, it returns the names (unqualified) of the
// relations added, dropped or changed, and true: only verdicts that looked
// one of those names up ([Result.Names]) can have changed. Otherwise it
// returns false, and any verdict or entry may have: a function's or
// operator's volatility, a view's definition (its base tables are not in
// the names of what reads it through another view), role memberships
// (who may read what).
func ChangedRelations(old, cur *Snapshot) (map[string]bool, bool) {
	if !reflect.DeepEqual(old.functions, cur.functions) || !reflect.DeepEqual(old.operators, cur.operators) ||
		old.memberships != cur.memberships {
		return nil, false
	}
	names := map[string]bool{}
	for k, r := range old.relations {
		if !changedRelation(r, cur.relations[k], names) {
			return nil, false
		}
	}
	for k, r := range cur.relations {
		if _, ok := old.relations[k]; !ok && !changedRelation(nil, r, names) {
			return nil, false
		}
	}
	return names, true
}

// changedRelation adds the name of a relation that differs between a and b
// (either may be nil) to names; false when a view is involved.
func changedRelation(a, b *Relation, names map[string]bool) bool {
	if a != nil && b != nil && reflect.DeepEqual(a, b) {
		return true
	}
	for _, r := range []*Relation{a, b} {
		if r == nil {
			continue
		}
		if r.Kind == KindView {
			return false
		}
		names[r.Name] = true
	}
	return true
}

// Touches reports whether the verdict looked up one of names.
func (r *Result) Touches(names map[string]bool) bool {
	for _, n := range r.Names {
		if names[n] {
			return true
		}
	}
	return false
}
