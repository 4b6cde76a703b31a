package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

var wireCols = []schemas.Column{
	{Name: "id", Family: schemas.FamilyInt, Key: true},
	{Name: "body", Family: schemas.FamilyText},
}

func TestBroadcast(t *testing.T) {
	cases := []struct {
		name string
		c    schemas.Change
		want bool
	}{
		{"insert", schemas.Change{Op: schemas.OpCreate, Columns: wireCols, After: []any{int64(1), "a"}}, false},
		{"update without old key", schemas.Change{Op: schemas.OpUpdate, Columns: wireCols, After: []any{int64(1), "b"}}, false},
		{"update keeping the key (full identity)", schemas.Change{Op: schemas.OpUpdate, Columns: wireCols, Before: []any{int64(1), "a"}, After: []any{int64(1), "b"}}, false},
		{"update keeping the key, body unchanged", schemas.Change{Op: schemas.OpUpdate, Columns: wireCols, Before: []any{int64(1), schemas.Absent}, After: []any{int64(1), schemas.Unchanged}}, false},
		{"update moving the key", schemas.Change{Op: schemas.OpUpdate, Columns: wireCols, Before: []any{int64(1), schemas.Absent}, After: []any{int64(2), "b"}}, true},
		{"delete", schemas.Change{Op: schemas.OpDelete, Columns: wireCols, Before: []any{int64(1), schemas.Absent}}, false},
		{"truncate", schemas.Change{Op: schemas.OpTruncate}, true},
		{"schema change", schemas.Change{Op: schemas.OpSchemaChange, Columns: wireCols}, true},
		{"catalog change", schemas.Change{Op: schemas.OpCatalogChange}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := broadcast(&tc.c); got != tc.want {
				t.Errorf("broadcast = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPartitionKeyFollowsTheRow(t *testing.T) {
	ins := schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpCreate, Columns: wireCols, After: []any{int64(7), "a"}}
	upd := schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpUpdate, Columns: wireCols, After: []any{int64(7), schemas.Unchanged}}
	del := schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpDelete, Columns: wireCols, Before: []any{int64(7), schemas.Absent}}
	other := ins
	other.Table = "u"
	k := string(partitionKey(&ins))
	if string(partitionKey(&upd)) != k || string(partitionKey(&del)) != k {
		t.Errorf("insert, update and delete of one row have different keys")
	}
	if string(partitionKey(&other)) == k {
		t.Errorf("same key in two tables")
	}
	var b balancer
	parts := []int{0, 1, 2, 3, 4, 5}
	m := kafkago.Message{Key: []byte(k)}
	if b.Balance(m, parts...) != b.Balance(kafkago.Message{Key: []byte(k)}, parts...) {
		t.Error("hash balancer is not deterministic")
	}
	for p := range parts {
		if got := b.Balance(kafkago.Message{Key: []byte(k), Headers: []kafkago.Header{partitionHeader(p)}}, parts...); got != p {
			t.Errorf("addressed to %d, balanced to %d", p, got)
		}
	}
}

// TestKeyValueEncodingIsFmts pins the key encoding to what it was when it
// went through fmt: a different key would move rows to other partitions
// across an upgrade.
func TestKeyValueEncodingIsFmts(t *testing.T) {
	values := []any{int64(0), int64(-9223372036854775808), int64(42), "", "a\x00b", "élan",
		schemas.Decimal("1.50"), schemas.UUID{1, 2, 3}, true, nil, schemas.Unchanged, []byte("x")}
	for _, v := range values {
		t.Run(fmt.Sprintf("%T %v", v, v), func(t *testing.T) {
			want := fmt.Sprintf("%T:%v\x00", v, v)
			if got := string(appendKeyValue([]byte("p"), v)); got != "p"+want {
				t.Errorf("key value %q, want %q", got, "p"+want)
			}
		})
	}
	c := schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpCreate,
		Columns: []schemas.Column{{Name: "a", Key: true}, {Name: "b"}, {Name: "c", Key: true}}, After: []any{int64(7), "x", "k"}}
	if got, want := string(partitionKey(&c)), "s\x00public\x00t\x00int64:7\x00string:k\x00"; got != want {
		t.Errorf("partition key %q, want %q", got, want)
	}
}

// TestChangeMessagesShareArenaSafely encodes records of every size into one
// arena and checks none overwrote another.
func TestChangeMessagesShareArenaSafely(t *testing.T) {
	var changes []schemas.Change
	for i := range 200 {
		body := strings.Repeat("b", (i*37)%(3*arenaMin))
		changes = append(changes, schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpCreate,
			Columns: wireCols, After: []any{int64(i), body}})
	}
	changes = append(changes, schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpTruncate})
	var arena []byte
	var msgs []kafkago.Message
	for i := range changes {
		part := -1
		if broadcast(&changes[i]) {
			part = 2
		}
		m, rest, err := changeMessage(&changes[i], part, arena)
		if err != nil {
			t.Fatal(err)
		}
		arena, msgs = rest, append(msgs, m)
	}
	for i, m := range msgs {
		want, err := schemas.MarshalChange(&changes[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != string(want) {
			t.Fatalf("record %d value changed after encoding later records", i)
		}
		if changes[i].Op == schemas.OpTruncate {
			if v, _ := header(&m, headerPartition); string(v) != "2" || m.Key != nil {
				t.Errorf("broadcast record: key %q, partition header %q", m.Key, v)
			}
			continue
		}
		if string(m.Key) != string(partitionKey(&changes[i])) {
			t.Errorf("record %d key %q, want %q", i, m.Key, partitionKey(&changes[i]))
		}
		if v, _ := header(&m, headerKind); string(v) != kindChange {
			t.Errorf("record %d kind %q", i, v)
		}
	}
}

// FuzzDecodeRecord: any record a topic may hold (any kind header, any
// value) decodes or fails with a DecodeError naming it, never panics; a
// change that decodes re-encodes to a change that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	change := schemas.Change{Source: "s", Schema: "public", Table: "t", Op: schemas.OpUpdate, Columns: wireCols,
		Position: schemas.Position{LSN: 1016}, Before: []any{int64(7), schemas.Absent}, After: []any{int64(7), "b"}}
	cm, _, err := changeMessage(&change, -1, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kindChange, cm.Value)
	for kind, v := range map[string]any{kindProgress: schemas.Progress{Source: "s", Position: schemas.Position{LSN: 1032}}, kindReset: schemas.Reset{Source: "s"}} {
		m, err := controlMessage(kind, v, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, m.Value)
	}
	f.Add("nonsense", []byte(`{"source":{"schema":"public","table":"t"}}`))
	f.Fuzz(func(t *testing.T, kind string, value []byte) {
		m := kafkago.Message{Topic: "topic", Partition: 1, Offset: 9, Value: value, Headers: []kafkago.Header{{Key: headerKind, Value: []byte(kind)}}}
		r, err := decodeRecord(&m)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Topic != "topic" || de.Offset != 9 {
				t.Fatalf("error %v does not name the record", err)
			}
			return
		}
		if r.kind != kind {
			t.Fatalf("decoded kind %q from header %q", r.kind, kind)
		}
		if kind != kindChange {
			return
		}
		again, _, err := changeMessage(r.change, -1, nil)
		if err != nil {
			t.Fatalf("a decoded change does not encode: %v", err)
		}
		r2, err := decodeRecord(&kafkago.Message{Value: again.Value, Headers: again.Headers})
		if err != nil {
			t.Fatalf("a re-encoded change does not decode: %v", err)
		}
		if fmt.Sprint(r2.change) != fmt.Sprint(r.change) {
			t.Fatalf("round trip changed the change:\n%v\n%v", r.change, r2.change)
		}
	})
}
