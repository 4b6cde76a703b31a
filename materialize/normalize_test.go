package materialize

import (
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
)

func TestNormalizeQueryValueMatchesStream(t *testing.T) {
	uuid, _ := schemas.ParseUUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		typ    string
		value  analyze.Value
		params *Params
		stream any
	}{
		{"integer literal", "int4", analyze.Value{Const: "42", Kind: "integer"}, nil, int64(42)},
		{"string literal against int", "int8", analyze.Value{Const: "42", Kind: "string"}, nil, int64(42)},
		{"untyped text parameter", "int4", analyze.Value{Param: 1}, &Params{Values: [][]byte{[]byte("42")}}, int64(42)},
		{"text-typed parameter with spaces and zeros", "int4", analyze.Value{Param: 1}, &Params{Types: []uint32{oidText}, Values: [][]byte{[]byte(" 0042 ")}}, int64(42)},
		{"binary int8 parameter", "int4", analyze.Value{Param: 1}, &Params{Types: []uint32{oidInt8}, Formats: []int16{1}, Values: [][]byte{{0, 0, 0, 0, 0, 0, 0, 42}}}, int64(42)},
		{"binary parameter of unspecified type takes the column's", "int4", analyze.Value{Param: 1}, &Params{Formats: []int16{1}, Values: [][]byte{{0, 0, 0, 42}}}, int64(42)},
		{"binary int2 negative", "int2", analyze.Value{Param: 1}, &Params{Types: []uint32{oidInt2}, Formats: []int16{1}, Values: [][]byte{{0xff, 0xfe}}}, int64(-2)},
		{"text", "text", analyze.Value{Const: "héllo", Kind: "string"}, nil, "héllo"},
		{"bool spelled yes", "bool", analyze.Value{Param: 1}, &Params{Values: [][]byte{[]byte("YES")}}, true},
		{"bool literal", "bool", analyze.Value{Const: "false", Kind: "bool"}, nil, false},
		{"uuid upper case", "uuid", analyze.Value{Const: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", Kind: "string"}, nil, uuid},
		{"binary uuid", "uuid", analyze.Value{Param: 1}, &Params{Types: []uint32{oidUUID}, Formats: []int16{1}, Values: [][]byte{uuid[:]}}, uuid},
		{"iso date", "date", analyze.Value{Const: "2024-02-29", Kind: "string"}, nil, day},
		{"binary date", "date", analyze.Value{Param: 1}, &Params{Types: []uint32{oidDate}, Formats: []int16{1}, Values: [][]byte{{0, 0, 0x22, 0x37}}}, time.Date(2023, 12, 25, 0, 0, 0, 0, time.UTC)},
		{"bytea hex", "bytea", analyze.Value{Const: `\xDEADbeef`, Kind: "string"}, nil, []byte{0xde, 0xad, 0xbe, 0xef}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := kindOf(c.typ)
			q, null, ok := normalizeValue(k, c.value, c.params)
			if !ok || null {
				t.Fatalf("query value not normalized (ok %v null %v)", ok, null)
			}
			s, ok := normalizeStream(k, c.stream)
			if !ok {
				t.Fatal("stream value not normalized")
			}
			if q != s {
				t.Fatalf("query %q != stream %q", q, s)
			}
		})
	}
}

func TestNormalizeRefusesWhatItCannotModel(t *testing.T) {
	for _, c := range []struct {
		name   string
		typ    string
		value  analyze.Value
		params *Params
	}{
		{"float column", "float8", analyze.Value{Const: "1", Kind: "integer"}, nil},
		{"array parameter", "int4", analyze.Value{Param: 1, Array: true}, &Params{Values: [][]byte{[]byte("{1,2}")}}},
		{"non-numeric text against int", "int4", analyze.Value{Param: 1}, &Params{Values: [][]byte{[]byte("4x")}}},
		{"numeric cast", "int4", analyze.Value{Param: 1, Cast: "numeric"}, &Params{Values: [][]byte{[]byte("4")}}},
		{"binary int4 bound to a text column", "text", analyze.Value{Param: 1}, &Params{Types: []uint32{oidInt4}, Formats: []int16{1}, Values: [][]byte{{0, 0, 0, 1}}}},
		{"date in a DateStyle-dependent form", "date", analyze.Value{Const: "02/03/2024", Kind: "string"}, nil},
		{"missing parameter", "int4", analyze.Value{Param: 2}, &Params{Values: [][]byte{[]byte("1")}}},
		{"ambiguous bool", "bool", analyze.Value{Const: "o", Kind: "string"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if s, _, ok := normalizeValue(kindOf(c.typ), c.value, c.params); ok {
				t.Fatalf("normalized to %q; want a table-level fallback", s)
			}
		})
	}
}

func TestNullParameterEqualsNothing(t *testing.T) {
	_, null, ok := normalizeValue(kindInt, analyze.Value{Param: 1}, &Params{Values: [][]byte{nil}})
	if !ok || !null {
		t.Fatalf("null %v ok %v", null, ok)
	}
}
