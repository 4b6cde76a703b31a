package kafka

import (
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
