package materialize

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

const tableTarget = 7

// get returns h's entry, or nil.
func (t *entryTable) get(h uint64) *cache.Entry {
	if i := t.find(h); i >= 0 {
		return t.slots[i]
	}
	return nil
}

// tableHash makes hashes that often share a home slot (low bits) and a
// control tag (top bits), so that probes must pass other entries.
func tableHash(x, y byte) uint64 { return uint64(x%40) | uint64(y%3)<<57 }

// tableOps drives an entryTable and a map with the same operations and
// fails at the first difference. Each op is three bytes: the operation,
// and two that make a hash.
func tableOps(t *testing.T, ops []byte) {
	t.Helper()
	tab := newEntryTable(tableTarget)
	model := map[uint64]*cache.Entry{}
	for len(ops) >= 3 {
		op, h := ops[0], tableHash(ops[1], ops[2])
		ops = ops[3:]
		switch op % 8 {
		case 0, 1, 2, 3: // put a new entry, sometimes with other refs
			if model[h] != nil {
				continue
			}
			refs := []cache.Ref{{Target: tableTarget, Hash: h}}
			if op%4 == 1 { // a join's entry: refs on other targets too
				refs = append(refs, cache.Ref{Target: 3, Hash: h ^ 1}, cache.Ref{Target: 4})
			}
			e := cache.NewEntry(binary.AppendUvarint(nil, uint64(len(model))), nil, refs)
			tab.put(h, e)
			model[h] = e
		case 4, 5: // delete
			i := tab.find(h)
			if (i >= 0) != (model[h] != nil) {
				t.Fatalf("find(%#x) = %d, model has %v", h, i, model[h] != nil)
			}
			if i >= 0 {
				tab.delete(i)
				delete(model, h)
			}
		case 6: // look up
		case 7:
			if op == 255 { // rarely: take everything
				got := tab.takeAll(nil)
				if len(got) != len(model) {
					t.Fatalf("takeAll gave %d entries, model has %d", len(got), len(model))
				}
				clear(model)
			}
		}
		if got := tab.get(h); got != model[h] {
			t.Fatalf("get(%#x) = %p, want %p", h, got, model[h])
		}
		checkTable(t, &tab, model)
	}
}

func checkTable(t *testing.T, tab *entryTable, model map[uint64]*cache.Entry) {
	t.Helper()
	if tab.len() != len(model) {
		t.Fatalf("len %d, model %d", tab.len(), len(model))
	}
	for h, e := range model {
		if got := tab.get(h); got != e {
			t.Fatalf("get(%#x) = %p, want %p", h, got, e)
		}
	}
	used := 0
	for _, c := range tab.ctrl {
		if c != ctrlEmpty {
			used++
		}
	}
	if used != tab.used || (len(tab.ctrl) > 0 && used >= len(tab.ctrl)) {
		t.Fatalf("used %d counted %d of %d slots: a probe needs an empty slot", tab.used, used, len(tab.ctrl))
	}
}

func TestEntryTableMatchesMap(t *testing.T) {
	for _, c := range []struct {
		name string
		ops  func(r *rand.Rand) []byte
	}{
		{"mostly puts", func(r *rand.Rand) []byte { return randomOps(r, 3000, 0) }},
		{"puts and deletes", func(r *rand.Rand) []byte { return randomOps(r, 20000, 4) }},
		{"churn with takes", func(r *rand.Rand) []byte {
			ops := randomOps(r, 20000, 4)
			for i := 0; i < len(ops); i += 3 * 997 {
				ops[i] = 255
			}
			return ops
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tableOps(t, c.ops(rand.New(rand.NewPCG(1, 2))))
		})
	}
}

// randomOps makes n ops; bias > 0 adds deletes among the puts.
func randomOps(r *rand.Rand, n int, bias byte) []byte {
	ops := make([]byte, 0, 3*n)
	for range n {
		op := byte(r.IntN(4))
		if bias > 0 && r.IntN(2) == 0 {
			op = bias + byte(r.IntN(3))
		}
		ops = append(ops, op, byte(r.IntN(256)), byte(r.IntN(256)))
	}
	return ops
}

func TestEntryTableGrows(t *testing.T) {
	tab := newEntryTable(tableTarget)
	model := map[uint64]*cache.Entry{}
	// Homes that collide, then enough to grow the table several times.
	for h := uint64(0); h < 3000; h += 8 {
		e := cache.NewEntry(binary.AppendUvarint(nil, h), nil, []cache.Ref{{Target: tableTarget, Hash: h}})
		tab.put(h, e)
		model[h] = e
	}
	checkTable(t, &tab, model)
	if l := len(tab.slots); tab.live*8 > l*7 || tab.live*16 <= l*7 {
		t.Fatalf("%d entries in %d slots", tab.live, l)
	}
	if got := len(tab.takeAll(nil)); got != len(model) || tab.len() != 0 {
		t.Fatalf("takeAll gave %d of %d, %d left", got, len(model), tab.len())
	}
}

// TestColDepsEntryWithSeveralValues: an IN list's entry depends on several
// values of one column; the table holds only entries with one, so it is
// registered in more, and found under each value.
func TestColDepsEntryWithSeveralValues(t *testing.T) {
	c := newColDeps("id", tableTarget)
	single := cache.NewEntry([]byte("single"), nil, []cache.Ref{{Target: tableTarget, Hash: 5}})
	in := cache.NewEntry([]byte("in"), nil, []cache.Ref{{Target: tableTarget, Hash: 5}, {Target: tableTarget, Hash: 6}})
	c.add(5, single)
	c.add(5, in)
	c.add(6, in)
	if c.one.len() != 0 || c.more[5].len() != 2 || c.more[6].len() != 1 {
		t.Fatalf("one %d, more[5] %v, more[6] %v", c.one.len(), c.more[5], c.more[6])
	}
	if got := c.changed(6, 1, nil); len(got) != 1 || got[0] != in {
		t.Fatalf("changed(6) = %v, want the IN-list entry", got)
	}
	c.remove(5, in)
	c.remove(5, single)
	if c.active() {
		t.Fatalf("still active: one %d, more %v", c.one.len(), c.more)
	}
	c.add(7, single) // a fresh value: the entry fits the table
	if c.one.len() != 1 || len(c.more) != 0 {
		t.Fatalf("one %d, more %v", c.one.len(), c.more)
	}
}

func FuzzEntryTable(f *testing.F) {
	f.Add([]byte{0, 1, 1, 1, 1, 1, 4, 1, 1, 6, 2, 2})
	f.Add(randomOps(rand.New(rand.NewPCG(3, 4)), 200, 4))
	f.Fuzz(func(t *testing.T, ops []byte) { tableOps(t, ops) })
}
