package kafka_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/debezium")

// debeziumVectors are records in Debezium's exact JSON converter format:
// NAME.key.json and NAME.value.json (an empty file is a null key or value).
func debeziumVectors(t testing.TB) map[string][2][]byte {
	t.Helper()
	keys, err := filepath.Glob("testdata/debezium/*.key.json")
	if err != nil || len(keys) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	out := map[string][2][]byte{}
	for _, kf := range keys {
		name := strings.TrimSuffix(filepath.Base(kf), ".key.json")
		key, err := os.ReadFile(kf)
		if err != nil {
			t.Fatal(err)
		}
		value, err := os.ReadFile(filepath.Join("testdata/debezium", name+".value.json"))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = [2][]byte{key, value}
	}
	return out
}

// TestDecodeDebeziumGolden decodes each vector and compares freshet's own
// encoding of the result with NAME.golden (run with -update to rewrite).
func TestDecodeDebeziumGolden(t *testing.T) {
	for name, v := range debeziumVectors(t) {
		t.Run(name, func(t *testing.T) {
			c, err := kafka.DecodeDebezium(v[0], v[1])
			if err != nil {
				t.Fatal(err)
			}
			got := []byte("null")
			if c != nil {
				if got, err = schemas.MarshalChange(c); err != nil {
					t.Fatalf("decoded change does not encode: %v", err)
				}
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata/debezium", name+".golden")
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("decoding differs from %s (run with -update if intended):\n got: %s\nwant: %s", path, pretty.Bytes(), want)
			}
		})
	}
}

// TestDecodeDebeziumSemantics pins what the golden files could hide.
func TestDecodeDebeziumSemantics(t *testing.T) {
	v := debeziumVectors(t)
	decode := func(name string) *schemas.Change {
		t.Helper()
		c, err := kafka.DecodeDebezium(v[name][0], v[name][1])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ins := decode("insert_with_schema")
	if ins.Op != schemas.OpCreate || ins.Source != "pgsrv" || ins.Schema != "public" || ins.Table != "orders" ||
		ins.Position.LSN != 23907400 || ins.TxID != 771 || ins.CommitTime.UnixMicro() != 1700000000123456 {
		t.Errorf("insert: %+v", ins)
	}
	if !ins.Columns[0].Key || ins.Columns[1].Key || ins.Columns[3].Type != "io.debezium.time.MicroTimestamp" {
		t.Errorf("insert columns: %+v", ins.Columns)
	}
	if c := decode("update_toast_no_schema"); !schemas.IsUnchanged(c.After[4]) {
		t.Errorf("unavailable TOAST value decoded as %v, want Unchanged", c.After[4])
	}
	if c := decode("tombstone"); c != nil {
		t.Errorf("tombstone decoded as %+v, want nothing", c)
	}
	if c := decode("truncate"); c.Op != schemas.OpTruncate || c.Before != nil || c.After != nil {
		t.Errorf("truncate: %+v", c)
	}
	if c := decode("snapshot_read"); c.Op != schemas.OpCreate {
		t.Errorf("snapshot read: op %q, want a create", c.Op)
	}
	my := decode("mysql_insert_composite_key")
	if my.Schema != "inventory" || !my.Columns[0].Key || !my.Columns[1].Key || my.Columns[2].Key || !my.Position.IsZero() {
		t.Errorf("mysql: schema %q columns %+v position %s", my.Schema, my.Columns, my.Position)
	}
}

func TestDecodeDebeziumRejects(t *testing.T) {
	cases := map[string]string{
		"not json":         `{"op":`,
		"not an object":    `[1,2]`,
		"no op, no schema": `{"before":null,"after":{"id":1}}`,
		"unknown op":       `{"op":"x","source":{"table":"t"}}`,
		"no table":         `{"op":"c","source":{},"after":{"id":1}}`,
		"after not object": `{"op":"c","source":{"table":"t"},"after":5}`,
		"duplicate column": `{"op":"c","source":{"table":"t"},"after":{"id":1,"id":2}}`,
		"mixed families":   `{"op":"u","source":{"table":"t"},"before":{"id":1},"after":{"id":"one"}}`,
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := kafka.DecodeDebezium(nil, []byte(value)); err == nil {
				t.Errorf("accepted %s as %+v", value, c)
			}
		})
	}
}

// FuzzDecodeDebezium: never a panic, and whatever decodes is a change
// freshet can encode and decode again.
func FuzzDecodeDebezium(f *testing.F) {
	for _, v := range debeziumVectors(f) {
		f.Add(v[0], v[1])
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c, err := kafka.DecodeDebezium(key, value)
		if err != nil || c == nil {
			return
		}
		b, err := schemas.MarshalChange(c)
		if err != nil {
			t.Fatalf("decoded change does not encode: %v", err)
		}
		if _, err := schemas.UnmarshalChange(b); err != nil {
			t.Fatalf("encoded change does not decode: %v\n%s", err, b)
		}
	})
}
