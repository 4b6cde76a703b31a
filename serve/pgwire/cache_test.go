package pgwire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

func encode(t testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestParseSequence(t *testing.T) {
	bind := &pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{{0, 0, 0, 5}, nil}, ResultFormatCodes: []int16{0, 1}}
	for _, c := range []struct {
		name  string
		msgs  []pgproto3.FrontendMessage
		shape string
		ok    bool
	}{
		{"bind execute sync", []pgproto3.FrontendMessage{bind, &pgproto3.Execute{}, &pgproto3.Sync{}}, "BES", true},
		{"with describe portal", []pgproto3.FrontendMessage{bind, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "BDPES", true},
		{"with describe statement", []pgproto3.FrontendMessage{bind, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "BDSES", true},
		{"row limit", []pgproto3.FrontendMessage{bind, &pgproto3.Execute{MaxRows: 10}, &pgproto3.Sync{}}, "", false},
		{"describe another portal", []pgproto3.FrontendMessage{bind, &pgproto3.Describe{ObjectType: 'P', Name: "x"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "", false},
		{"no sync yet", []pgproto3.FrontendMessage{bind, &pgproto3.Execute{}}, "", false},
		{"flush instead of sync", []pgproto3.FrontendMessage{bind, &pgproto3.Execute{}, &pgproto3.Flush{}}, "", false},
		{"two executes", []pgproto3.FrontendMessage{bind, &pgproto3.Execute{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := encode(t, c.msgs...)
			extra := encode(t, &pgproto3.Query{String: "next"})
			var seq sequence
			total, ok := parseSequence(append(b, extra...), &seq)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			if total != len(b) || seq.shape != c.shape || seq.stmt != "s1" {
				t.Fatalf("total %d (want %d) shape %q stmt %q", total, len(b), seq.shape, seq.stmt)
			}
			if len(seq.values) != 2 || !bytes.Equal(seq.values[0], []byte{0, 0, 0, 5}) || seq.values[1] != nil {
				t.Fatalf("values %v", seq.values)
			}
			if len(seq.paramFormats) != 1 || len(seq.resultFormats) != 2 || seq.resultFormats[1] != 1 {
				t.Fatalf("formats %v %v", seq.paramFormats, seq.resultFormats)
			}
		})
	}
}

func FuzzParseSequence(f *testing.F) {
	f.Add(encode(f, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(f, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add([]byte{'B', 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var seq sequence
		total, ok := parseSequence(b, &seq)
		if !ok {
			return
		}
		if total > len(b) || total < 5 {
			t.Fatalf("total %d of %d bytes", total, len(b))
		}
		for _, v := range seq.values {
			if v != nil && len(v) > len(b) {
				t.Fatal("value longer than the input")
			}
		}
	})
}

func TestNewCacheStateSettings(t *testing.T) {
	var greeting []byte
	for _, ps := range []*pgproto3.ParameterStatus{{Name: "TimeZone", Value: "UTC"}, {Name: "DateStyle", Value: "ISO, MDY"}, {Name: "server_version", Value: "15"}} {
		greeting, _ = ps.Encode(greeting)
	}
	who := materialize.Session{Database: "db", User: "alice"}
	c := newCacheState(who, map[string]string{"user": "alice", "database": "db", "extra_float_digits": "3"}, greeting, nil)
	if c.req.Session != analyze.SessionKnown || c.req.Role != "alice" || c.req.Database != "db" {
		t.Fatalf("request %+v", c.req)
	}
	if c.req.Settings[cache.TimeZone] != "UTC" || c.req.Settings[cache.DateStyle] != "ISO, MDY" || c.req.Settings[cache.ExtraFloatDigits] != "3" {
		t.Fatalf("settings %v", *c.req.Settings)
	}
	if c := newCacheState(who, map[string]string{"user": "alice", "options": "-c search_path=x"}, nil, nil); c.req.Session != analyze.SessionUnknown {
		t.Fatal("startup options the key does not cover left the session known")
	}
}

func TestChangesSettings(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT set_config('role', 'bob', false)":   true,
		"select SET_CONFIG('search_path','x',true)": true,
		"SELECT v FROM t WHERE id = 1":              false,
	} {
		if got := changesSettings(sql); got != want {
			t.Errorf("%q: %v", sql, got)
		}
	}
}

// BenchmarkParseSequence is the per-hit cost of recognising a cached
// extended-protocol request (pgbench -M prepared sends exactly this).
func BenchmarkParseSequence(b *testing.B) {
	msg := encode(b, &pgproto3.Bind{PreparedStatement: "P_1", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{{0, 0, 0, 5}}, ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	var seq sequence
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseSequence(msg, &seq); !ok {
			b.Fatal("not recognised")
		}
	}
}

func TestCreatesTemporary(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"CREATE TEMP TABLE t (i int)", true},
		{"create temporary table t (i int)", true},
		{"CREATE GLOBAL TEMPORARY TABLE t (i int)", true},
		{"CREATE LOCAL TEMP VIEW v AS SELECT 1", true},
		{"CREATE TABLE pg_temp.t (i int)", true},
		{"CREATE TEMP SEQUENCE s", true},
		{"SELECT * INTO TEMP t FROM a", true},
		{"WITH x AS (SELECT 1) SELECT * INTO TEMPORARY t FROM x", true},
		{"DO $$ BEGIN CREATE TEMP TABLE t (i int); END $$", true},
		{"SELECT 1; CREATE TEMP TABLE t (i int)", true},
		{"CREATE TABLE readings (id int, temperature real)", false},
		{"CREATE TABLE t (temp_c real)", false},
		{"UPDATE readings SET temp = 1", false},
		{"SELECT temp FROM readings", false},
		{"SELECT * INTO t FROM a", false},
		{"CREATE TABLE t (i int)", false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			if got := createsTemporary(materialize.Classify(tt.sql)); got != tt.want {
				t.Fatalf("createsTemporary = %v, want %v", got, tt.want)
			}
		})
	}
}

// What a simple Query read goes through before its lookup allocates
// nothing, in either case.
func TestQueryReadClassificationDoesNotAllocate(t *testing.T) {
	for _, sql := range []string{"select v from t where id = 1", "SELECT v FROM t WHERE id = 1"} {
		var cacheable bool
		allocs := testing.AllocsPerRun(100, func() {
			st := materialize.Classify(sql)
			cacheable = st.Class == materialize.ClassCacheable && !changesSettings(sql) && !createsTemporary(st) &&
				!isKeyword(st, "DISCARD", "SET", "RESET")
		})
		if allocs != 0 || !cacheable {
			t.Fatalf("%q: %v allocations, cacheable %v", sql, allocs, cacheable)
		}
	}
}
