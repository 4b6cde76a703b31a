package schemas_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/freshetdb/freshet/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var (
	commitTime = time.Date(2026, 11, 22, 3, 4, 5, 123456000, time.UTC)
	pos        = schemas.Position{LSN: 0x16_B374D848}
	idCol      = schemas.Column{Name: "id", Type: "int4", OID: 23, Family: schemas.FamilyInt, Key: true}
	nameCol    = schemas.Column{Name: "name", Type: "text", OID: 25, Family: schemas.FamilyText}
	bodyCol    = schemas.Column{Name: "body", Type: "text", OID: 25, Family: schemas.FamilyText}
)

func change(op schemas.Op, cols []schemas.Column, before, after []any) schemas.Change {
	return schemas.Change{
		Source: "origin", Schema: "public", Table: "t", Op: op, Columns: cols,
		Before: before, After: after, Position: pos, Seq: 3, TxID: 771, CommitTime: commitTime,
	}
}

func mustUUID(t *testing.T, s string) schemas.UUID {
	t.Helper()
	u, err := schemas.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// goldenCases covers every op and every value family.
func goldenCases(t *testing.T) map[string]schemas.Change {
	two := []schemas.Column{idCol, nameCol}
	three := []schemas.Column{idCol, nameCol, bodyCol}
	fam := func(name, typ string, oid uint32, f, elem schemas.Family) []schemas.Column {
		return []schemas.Column{idCol, {Name: name, Type: typ, OID: oid, Family: f, Elem: elem}}
	}
	one := func(cols []schemas.Column, v any) schemas.Change {
		return change(schemas.OpCreate, cols, nil, []any{int64(1), v})
	}
	return map[string]schemas.Change{
		"op_create":               change(schemas.OpCreate, two, nil, []any{int64(1), "a \"quoted\"\n\x01 é"}),
		"op_update_full":          change(schemas.OpUpdate, two, []any{int64(1), "old"}, []any{int64(1), "new"}),
		"op_update_key_change":    change(schemas.OpUpdate, two, []any{int64(1), schemas.Absent}, []any{int64(2), "x"}),
		"op_update_toast":         change(schemas.OpUpdate, three, nil, []any{int64(1), "renamed", schemas.Unchanged}),
		"op_delete_key_only":      change(schemas.OpDelete, two, []any{int64(7), schemas.Absent}, nil),
		"op_delete_null":          change(schemas.OpDelete, two, []any{int64(7), nil}, nil),
		"op_truncate":             change(schemas.OpTruncate, nil, nil, nil),
		"op_schema_change":        change(schemas.OpSchemaChange, three, nil, nil),
		"op_catalog_change":       {Source: "origin", Op: schemas.OpCatalogChange, Position: pos, Seq: 3, TxID: 771, CommitTime: commitTime},
		"family_bool":             one(fam("v", "bool", 16, schemas.FamilyBool, ""), true),
		"family_float":            one(fam("v", "float8", 701, schemas.FamilyFloat, ""), 1.5e-7),
		"family_float_infinity":   one(fam("v", "float8", 701, schemas.FamilyFloat, ""), float64Inf()),
		"family_numeric":          one(fam("v", "numeric", 1700, schemas.FamilyNumeric, ""), schemas.Decimal("12345678901234567890.000100")),
		"family_bytes":            one(fam("v", "bytea", 17, schemas.FamilyBytes, ""), []byte{0, 1, 0xfe, 0xff}),
		"family_uuid":             one(fam("v", "uuid", 2950, schemas.FamilyUUID, ""), mustUUID(t, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
		"family_json":             one(fam("v", "jsonb", 3802, schemas.FamilyJSON, ""), schemas.JSON(`{"a": [1, 2.5, "x"]}`)),
		"family_date":             one(fam("v", "date", 1082, schemas.FamilyDate, ""), time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)),
		"family_date_infinity":    one(fam("v", "date", 1082, schemas.FamilyDate, ""), schemas.NegInfinity),
		"family_time":             one(fam("v", "time", 1083, schemas.FamilyTime, ""), schemas.TimeOfDay(13*3600e6+5*60e6+7e6+250)),
		"family_timestamp":        one(fam("v", "timestamp", 1114, schemas.FamilyTimestamp, ""), time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)),
		"family_timestamptz":      one(fam("v", "timestamptz", 1184, schemas.FamilyTimestampTZ, ""), commitTime),
		"family_timestamptz_inf":  one(fam("v", "timestamptz", 1184, schemas.FamilyTimestampTZ, ""), schemas.PosInfinity),
		"family_interval":         one(fam("v", "interval", 1186, schemas.FamilyInterval, ""), schemas.Interval{Months: 14, Days: -3, Micros: 3_600_000_001}),
		"family_array":            one(fam("v", "_int4", 1007, schemas.FamilyArray, schemas.FamilyInt), []any{int64(1), nil, int64(3)}),
		"family_array_2d":         one(fam("v", "_text", 1009, schemas.FamilyArray, schemas.FamilyText), []any{[]any{"a", "b"}, []any{"c", nil}}),
		"family_range":            one(fam("v", "int4range", 3904, schemas.FamilyRange, schemas.FamilyInt), schemas.Range{Lower: int64(1), Upper: int64(10), HasLower: true, HasUpper: true, LowerInclusive: true}),
		"family_range_unbounded":  one(fam("v", "tstzrange", 3910, schemas.FamilyRange, schemas.FamilyTimestampTZ), schemas.Range{Lower: commitTime, HasLower: true, LowerInclusive: true}),
		"family_range_empty":      one(fam("v", "int8range", 3926, schemas.FamilyRange, schemas.FamilyInt), schemas.Range{Empty: true}),
		"family_text_enum":        one(fam("v", "mood", 16385, schemas.FamilyText, ""), "happy"),
		"family_text_unknown_oid": one(fam("v", "", 99999, schemas.FamilyText, ""), "(1,2)"),
	}
}

func float64Inf() float64 { return 1 / zero }

var zero = 0.0

func TestChangeGolden(t *testing.T) {
	for name, c := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			got, err := schemas.MarshalChange(&c)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("not valid JSON: %s", got)
			}
			var indented bytes.Buffer
			if err := json.Indent(&indented, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			indented.WriteByte('\n')
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./schemas -update)", err)
			}
			if !bytes.Equal(indented.Bytes(), want) {
				t.Fatalf("encoding differs from %s (run with -update if intended):\n got: %s\nwant: %s", path, indented.Bytes(), want)
			}
			back, err := schemas.UnmarshalChange(want)
			if err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if !reflect.DeepEqual(*back, c) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", *back, c)
			}
		})
	}
}

func TestUnmarshalChangeRejects(t *testing.T) {
	base, err := schemas.MarshalChange(&schemas.Change{Op: schemas.OpCreate, Columns: []schemas.Column{idCol}, After: []any{int64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"not json":              `{"op":`,
		"unknown op":            `{"op":"x"}`,
		"field not a column":    `{"op":"c","after":{"nope":1},"columns":[]}`,
		"int as string":         `{"op":"c","after":{"id":"1"},"columns":[{"name":"id","family":"int"}]}`,
		"bad uuid":              `{"op":"c","after":{"v":"zz"},"columns":[{"name":"v","family":"uuid"}]}`,
		"bad base64":            `{"op":"c","after":{"v":"!!"},"columns":[{"name":"v","family":"bytes"}]}`,
		"bad time of day":       `{"op":"c","after":{"v":"25:99:00"},"columns":[{"name":"v","family":"time"}]}`,
		"unknown family":        `{"op":"c","after":{"v":"x"},"columns":[{"name":"v","family":"weird"}]}`,
		"unchanged has a value": `{"op":"u","after":{"v":"x"},"unchanged":{"after":["v"]},"columns":[{"name":"v","family":"text"}]}`,
		"bad lsn":               `{"op":"c","position":{"lsn":"xyz"}}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := schemas.UnmarshalChange([]byte(in)); err == nil {
				t.Fatalf("decoded %s without error", in)
			}
		})
	}
	if _, err := schemas.UnmarshalChange(base); err != nil {
		t.Fatalf("valid change rejected: %v", err)
	}
}

func TestMarshalChangeRejectsMismatchedImage(t *testing.T) {
	c := schemas.Change{Op: schemas.OpCreate, Columns: []schemas.Column{idCol}, After: []any{int64(1), "extra"}}
	if _, err := schemas.MarshalChange(&c); err == nil {
		t.Fatal("encoded an image with more values than columns")
	}
	c = schemas.Change{Op: schemas.OpCreate, Columns: []schemas.Column{idCol}, After: []any{struct{}{}}}
	if _, err := schemas.MarshalChange(&c); err == nil {
		t.Fatal("encoded a value of an unknown Go type")
	}
}

func TestProgressAndResetJSON(t *testing.T) {
	p := schemas.Progress{Source: "origin", Position: pos, CommitTime: commitTime}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"source":"origin","position":{"lsn":"16/B374D848"},"commit_time":"2026-11-22T03:04:05.123456Z"}`
	if string(b) != want {
		t.Fatalf("progress = %s, want %s", b, want)
	}
	var back schemas.Progress
	if err := json.Unmarshal(b, &back); err != nil || back != p {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	r := schemas.Reset{Source: "origin", Reason: "slot lost", Position: pos}
	b, err = json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"source":"origin","reason":"slot lost","position":{"lsn":"16/B374D848"}}` {
		t.Fatalf("reset = %s", b)
	}
}

func FuzzUnmarshalChange(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := schemas.UnmarshalChange(in)
		if err != nil {
			return
		}
		enc, err := schemas.MarshalChange(c)
		if err != nil {
			// Decoding accepts images whose field set the encoder refuses
			// only if they disagree with the columns; that must not happen.
			t.Fatalf("re-encode of a decoded change failed: %v", err)
		}
		c2, err := schemas.UnmarshalChange(enc)
		if err != nil {
			t.Fatalf("decode of our own encoding failed: %v\n%s", err, enc)
		}
		enc2, err := schemas.MarshalChange(c2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v\n%s\n%s", err, enc, enc2)
		}
	})
}
