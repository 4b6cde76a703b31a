package postgres

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// pgoutput message builders, as the server writes them (protocol v2).

func u32(b []byte, v uint32) []byte  { return binary.BigEndian.AppendUint32(b, v) }
func u64(b []byte, v uint64) []byte  { return binary.BigEndian.AppendUint64(b, v) }
func cstr(b []byte, s string) []byte { return append(append(b, s...), 0) }

func msgBegin(final uint64, xid uint32) []byte {
	return u32(u64(u64([]byte{'B'}, final), 0), xid)
}

func msgCommit(commit, end uint64) []byte {
	return u64(u64(u64([]byte{'C', 0}, commit), end), 0)
}

// msgRelation describes table public.t with int4 columns; the first is the key.
func msgRelation(xid uint32, inStream bool, id uint32, cols ...string) []byte {
	b := []byte{'R'}
	if inStream {
		b = u32(b, xid)
	}
	b = cstr(cstr(u32(b, id), "public"), "t")
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for i, c := range cols {
		flag := byte(0)
		if i == 0 {
			flag = 1
		}
		b = u32(u32(cstr(append(b, flag), c), 23), 0xffffffff)
	}
	return b
}

func tuple(b []byte, vals ...string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for _, v := range vals {
		switch v {
		case "NULL":
			b = append(b, 'n')
		case "TOAST":
			b = append(b, 'u')
		default:
			b = append(u32(append(b, 't'), uint32(len(v))), v...)
		}
	}
	return b
}

func msgInsert(xid uint32, inStream bool, rel uint32, vals ...string) []byte {
	b := []byte{'I'}
	if inStream {
		b = u32(b, xid)
	}
	return tuple(append(u32(b, rel), 'N'), vals...)
}

func msgStreamStart(xid uint32, first bool) []byte {
	f := byte(0)
	if first {
		f = 1
	}
	return append(u32([]byte{'S'}, xid), f)
}

func msgStreamStop() []byte { return []byte{'E'} }

func msgStreamCommit(xid uint32, commit, end uint64) []byte {
	return u64(u64(u64(append(u32([]byte{'c'}, xid), 0), commit), end), 0)
}

func msgStreamAbort(xid, subxid uint32) []byte { return u32(u32([]byte{'A'}, xid), subxid) }

func msgLogical(xid uint32, inStream, transactional bool, prefix, content string) []byte {
	b := []byte{'M'}
	if inStream {
		b = u32(b, xid)
	}
	flags := byte(0)
	if transactional {
		flags = 1
	}
	b = cstr(u64(append(b, flags), 0x20), prefix)
	return append(u32(b, uint32(len(content))), content...)
}

// feed runs msgs through an assembler and returns the committed
// transactions.
func feed(t *testing.T, msgs ...[]byte) ([]*ingest.Transaction, error) {
	t.Helper()
	return feedDDL(t, false, msgs...)
}

// feedDDL is feed with the DDL event trigger's messages followed or not.
func feedDDL(t *testing.T, ddl bool, msgs ...[]byte) ([]*ingest.Transaction, error) {
	t.Helper()
	a := newAssembler("origin", ddl)
	var out []*ingest.Transaction
	for _, m := range msgs {
		parsed, err := a.parse(m, 2)
		if err != nil {
			return out, err
		}
		tx, err := a.handle(parsed)
		if err != nil {
			return out, err
		}
		if tx != nil {
			out = append(out, tx)
		}
	}
	return out, nil
}

func ids(tx *ingest.Transaction) []any {
	var out []any
	for _, c := range tx.Changes {
		if c.After != nil {
			out = append(out, c.After[0])
		}
	}
	return out
}

func TestAssemblerStreamedTransactions(t *testing.T) {
	const top, sub1, sub2 = 700, 701, 702
	txs, err := feed(t,
		msgStreamStart(top, true),
		msgRelation(top, true, 1, "id", "v"),
		msgInsert(top, true, 1, "1", "10"),
		msgInsert(sub1, true, 1, "2", "20"),
		msgStreamStop(),
		// An ordinary transaction commits while the streamed one is open.
		msgBegin(0x90, 900),
		msgInsert(0, false, 1, "50", "NULL"),
		msgCommit(0x90, 0x98),
		msgStreamStart(top, false),
		msgInsert(sub2, true, 1, "3", "TOAST"),
		msgInsert(top, true, 1, "4", "40"),
		msgStreamStop(),
		msgStreamAbort(top, sub1), // ROLLBACK TO SAVEPOINT: only sub1's rows go
		msgStreamStart(800, true),
		msgInsert(800, true, 1, "99", "99"),
		msgStreamStop(),
		msgStreamAbort(800, 800), // the whole transaction rolls back
		msgStreamCommit(top, 0x100, 0x108),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 2 {
		t.Fatalf("got %d transactions, want 2", len(txs))
	}
	if got := ids(txs[0]); !reflect.DeepEqual(got, []any{int64(50)}) || txs[0].Progress.Position.LSN != 0x98 {
		t.Fatalf("first transaction %v at %s, want [50] at 0/98", got, txs[0].Progress.Position)
	}
	if got := ids(txs[1]); !reflect.DeepEqual(got, []any{int64(1), int64(3), int64(4)}) {
		t.Fatalf("streamed transaction ids %v, want [1 3 4]", got)
	}
	for i, c := range txs[1].Changes {
		if c.Position.LSN != 0x108 || c.Seq != uint32(i) || c.TxID != top {
			t.Fatalf("change %d: position %s seq %d xid %d", i, c.Position, c.Seq, c.TxID)
		}
	}
	if !schemas.IsUnchanged(txs[1].Changes[1].After[1]) {
		t.Fatalf("TOAST column = %v, want Unchanged", txs[1].Changes[1].After[1])
	}
}

func TestAssemblerSchemaChange(t *testing.T) {
	txs, err := feed(t,
		msgBegin(0x10, 1), msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "1"), msgCommit(0x10, 0x18),
		msgBegin(0x20, 2), msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "2"), msgCommit(0x20, 0x28),
		msgBegin(0x30, 3), msgRelation(0, false, 1, "id", "extra"), msgInsert(0, false, 1, "3", "7"), msgCommit(0x30, 0x38),
	)
	if err != nil {
		t.Fatal(err)
	}
	var ops []schemas.Op
	for _, tx := range txs {
		for _, c := range tx.Changes {
			ops = append(ops, c.Op)
		}
	}
	want := []schemas.Op{"c", "c", "s", "c"}
	if !reflect.DeepEqual(ops, want) {
		t.Fatalf("ops = %v, want %v (a repeated identical Relation is not a schema change)", ops, want)
	}
}

func TestAssemblerRejects(t *testing.T) {
	cases := map[string][][]byte{
		"unknown relation":     {msgBegin(1, 1), msgInsert(0, false, 42, "1")},
		"change outside a tx":  {msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "1")},
		"tuple width mismatch": {msgBegin(1, 1), msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "1", "2")},
		"bad int":              {msgBegin(1, 1), msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "x")},
		"truncated insert":     {msgBegin(1, 1), msgRelation(0, false, 1, "id"), msgInsert(0, false, 1, "1")[:8]},
		"truncated relation":   {msgRelation(0, false, 1, "id", "v")[:12]},
		"commit without begin": {msgCommit(1, 2)},
		"nested begin":         {msgBegin(1, 1), msgBegin(2, 2)},
		"unknown message":      {{'Z', 1, 2}},
		"empty":                {{}},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := feed(t, msgs...); err == nil {
				t.Fatal("accepted")
			} else if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v wraps neither ErrProtocol nor ErrDecode", err)
			} else if (&StreamError{Err: err}).Temporary() {
				t.Fatalf("error %v would be retried", err)
			}
		})
	}
}

// FuzzAssembler feeds arbitrary message sequences: errors are fine, panics
// are not. Input is a sequence of length-prefixed messages.
func FuzzAssembler(f *testing.F) {
	join := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, byte(len(m)))
			b = append(b, m...)
		}
		return b
	}
	f.Add(join(msgBegin(0x10, 1), msgRelation(0, false, 1, "id", "v"), msgInsert(0, false, 1, "1", "TOAST"), msgCommit(0x10, 0x18)))
	f.Add(join(msgStreamStart(7, true), msgRelation(7, true, 1, "id"), msgInsert(8, true, 1, "1"), msgStreamStop(), msgStreamAbort(7, 8), msgStreamCommit(7, 1, 2)))
	f.Add(join(msgBegin(0x10, 1), msgLogical(0, false, true, DDLPrefix, "GRANT"), msgCommit(0x10, 0x18)))
	f.Add(join(msgLogical(0, false, true, DDLPrefix, "outside a transaction")))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := newAssembler("origin", true) // DDL messages followed
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n > len(in) {
				n = len(in)
			}
			msg, err := a.parse(in[:n], 2)
			in = in[n:]
			if err != nil {
				continue
			}
			_, _ = a.handle(msg)
		}
	})
}

// The DDL event trigger's message becomes a catalog change in its
// transaction, in order, streamed or not; other messages, and the
// trigger's when not followed, change nothing.
func TestAssemblerDDLMessages(t *testing.T) {
	plain := [][]byte{
		msgBegin(0x90, 900),
		msgRelation(0, false, 1, "id", "v"),
		msgInsert(0, false, 1, "1", "10"),
		msgLogical(0, false, true, DDLPrefix, "GRANT"),
		msgLogical(0, false, true, "someone_else", "x"),
		msgCommit(0x90, 0x98),
	}
	streamed := [][]byte{
		msgStreamStart(700, true),
		msgLogical(700, true, true, DDLPrefix, "ALTER TABLE"),
		msgStreamStop(),
		msgStreamCommit(700, 0xa0, 0xa8),
	}
	tests := []struct {
		name string
		ddl  bool
		msgs [][]byte
		want []schemas.Op
	}{
		{"followed", true, plain, []schemas.Op{schemas.OpCreate, schemas.OpCatalogChange}},
		{"not followed", false, plain, []schemas.Op{schemas.OpCreate}},
		{"streamed", true, streamed, []schemas.Op{schemas.OpCatalogChange}},
		{"non-transactional", true, [][]byte{msgBegin(0x90, 900), msgLogical(0, false, false, DDLPrefix, "GRANT"), msgCommit(0x90, 0x98)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txs, err := feedDDL(t, tt.ddl, tt.msgs...)
			if err != nil || len(txs) != 1 {
				t.Fatalf("%d transactions, err %v; want 1", len(txs), err)
			}
			var got []schemas.Op
			for _, c := range txs[0].Changes {
				got = append(got, c.Op)
				if c.Op == schemas.OpCatalogChange && (c.Table != "" || c.Position.IsZero()) {
					t.Errorf("catalog change %+v: want no table and the commit position", c)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ops %v, want %v", got, tt.want)
			}
		})
	}
}
