package analyze

// scope is one query block's FROM clause, plus the CTE names visible in it.
type scope struct {
	parent *scope
	ctes   []string
	items  []*fromItem
}

// fromItem is one name a column can be qualified with in a block.
type fromItem struct {
	name string
	// rel is set for a base table scanned directly; views, subqueries,
	// CTEs and functions leave it nil, and their columns never yield
	// predicates.
	rel *Relation
	// scans are the indexes in Result.Scans this item reads: the table,
	// then its partitions or inheritance children.
	scans []int
}

func (s *scope) isCTE(name string) bool {
	for ; s != nil; s = s.parent {
		for _, c := range s.ctes {
			if c == name {
				return true
			}
		}
	}
	return false
}

// byName finds an item of this block by its reference name.
func (s *scope) byName(name string) *fromItem {
	for _, it := range s.items {
		if it.name == name {
			return it
		}
	}
	return nil
}

// byRelation finds an unaliased item of this block reading schema.name.
func (s *scope) byRelation(schema, name string) *fromItem {
	for _, it := range s.items {
		if it.rel != nil && it.name == name && it.rel.Schema == schema && it.rel.Name == name {
			return it
		}
	}
	return nil
}

// withColumn finds the one base-table item of this block having column
// col. An unqualified column resolves to this block before any outer one,
// and a valid statement cannot have it in two items; so exactly one
// base-table match settles it, and none means it belongs elsewhere.
func (s *scope) withColumn(col string) *fromItem {
	var found *fromItem
	for _, it := range s.items {
		if it.rel == nil {
			continue
		}
		if _, ok := it.rel.column(col); ok {
			if found != nil {
				return nil
			}
			found = it
		}
	}
	return found
}
