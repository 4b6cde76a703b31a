package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

// view is a change reduced to what the workload test compares; Absent
// columns are left out of the images, Unchanged ones kept as the marker.
type view struct {
	Table  string
	Op     schemas.Op
	Before map[string]any
	After  map[string]any
}

func image(cols []schemas.Column, vals []any) map[string]any {
	if vals == nil {
		return nil
	}
	m := map[string]any{}
	for i, v := range vals {
		if !schemas.IsAbsent(v) {
			m[cols[i].Name] = v
		}
	}
	return m
}

func views(prefix string, cs []schemas.Change) []view {
	out := make([]view, len(cs))
	for i, c := range cs {
		out[i] = view{Table: strings.TrimPrefix(c.Table, prefix+"_"), Op: c.Op, Before: image(c.Columns, c.Before), After: image(c.Columns, c.After)}
	}
	return out
}

func hasRow(table string, id int64) func([]schemas.Change) bool {
	return func(cs []schemas.Change) bool {
		for _, c := range cs {
			if strings.HasSuffix(c.Table, "_"+table) && c.Op == schemas.OpCreate && c.After[0] == id {
				return true
			}
		}
		return false
	}
}

// TestScriptedWorkload runs every kind of change through the real server's
// pgoutput and checks the exact events, in commit order, with their images.
func TestScriptedWorkload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, "rows", "trunc", "trunc2", "full", "types", "big")
	mood := f.table("mood")
	f.exec(ctx, `CREATE TYPE `+mood+` AS ENUM ('sad', 'happy')`)
	f.exec(ctx, `CREATE TABLE `+f.table("rows")+` (id int PRIMARY KEY, name text, big text)`)
	f.exec(ctx, `ALTER TABLE `+f.table("rows")+` ALTER COLUMN big SET STORAGE EXTERNAL`)
	f.exec(ctx, `CREATE TABLE `+f.table("trunc")+` (id int PRIMARY KEY)`)
	f.exec(ctx, `CREATE TABLE `+f.table("trunc2")+` (id int PRIMARY KEY)`)
	f.exec(ctx, `CREATE TABLE `+f.table("full")+` (id int PRIMARY KEY, v text)`)
	f.exec(ctx, `ALTER TABLE `+f.table("full")+` REPLICA IDENTITY FULL`)
	f.exec(ctx, `CREATE TABLE `+f.table("types")+` (id int PRIMARY KEY, n numeric, tz timestamptz, d date, dinf date,
		tm time, ts timestamp, iv interval, u uuid, b bytea, jb jsonb, js json, arr int[], tarr text[], r int4range,
		e `+mood+`, f8 float8, bo bool, i8 bigint, ip inet)`)
	f.exec(ctx, `CREATE TABLE `+f.table("big")+` (id int PRIMARY KEY, pad text)`)

	rep, err := postgres.Setup(ctx, f.cfg, schemas.Position{})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if !rep.CreatedPublication || !rep.CreatedSlot || rep.WALLevel != "logical" || len(rep.Tables) != 6 {
		t.Fatalf("Setup report = %+v", rep)
	}
	for _, tr := range rep.Tables {
		short := strings.TrimPrefix(tr.Table, f.name+"_")
		if !tr.CanSelect || !tr.HasPrimaryKey || tr.CompleteBefore != (short == "full") {
			t.Errorf("Setup report for %s = %+v", short, tr)
		}
		if short != "full" && (tr.Identity != postgres.IdentityDefault || !strings.Contains(tr.Advice, "REPLICA IDENTITY FULL")) {
			t.Errorf("Setup report for %s = %+v, want DEFAULT with advice to set FULL", short, tr)
		}
	}
	if again, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil || again.CreatedSlot || again.CreatedPublication {
		t.Fatalf("second Setup = %+v, %v; want nothing created", again, err)
	}
	run := f.start(t, schemas.Position{})

	bigText := f.bigText(ctx)
	rows, trunc, full, types, big := f.table("rows"), f.table("trunc"), f.table("full"), f.table("types"), f.table("big")
	f.exec(ctx, `INSERT INTO `+rows+` VALUES (1, 'a', $1), (2, 'b', NULL)`, bigText)
	f.exec(ctx, `UPDATE `+rows+` SET name = 'a2' WHERE id = 1`)
	f.exec(ctx, `UPDATE `+rows+` SET id = 3 WHERE id = 2`)
	f.exec(ctx, `DELETE FROM `+rows+` WHERE id = 3`)
	f.exec(ctx, `INSERT INTO `+trunc+` VALUES (1)`)
	f.exec(ctx, `TRUNCATE `+trunc)
	f.exec(ctx, `TRUNCATE `+trunc+`, `+f.table("trunc2"))
	f.exec(ctx, `INSERT INTO `+full+` VALUES (1, 'x')`)
	f.exec(ctx, `UPDATE `+full+` SET v = 'y'`)
	f.exec(ctx, `DELETE FROM `+full)
	f.exec(ctx, `ALTER TABLE `+rows+` ADD COLUMN extra int`)
	f.exec(ctx, `INSERT INTO `+rows+` VALUES (4, 'd', NULL, 42)`)
	f.exec(ctx, `INSERT INTO `+types+` VALUES (1, '12345678901234567890.000100', '2024-02-29 12:34:56.789012+02',
		'2024-02-29', 'infinity', '13:05:07.00025', '1999-12-31 23:59:59.999999', '1 year 2 mons -3 days 01:00:00.000001',
		'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x0001feff', '{"a": [1, 2.5, "x"]}', '{"k":1}', '{1,NULL,3}',
		'{"a b",NULL}', '[1,10)', 'happy', 1.5e-7, true, -9223372036854775808, '10.1.2.3')`)
	f.exec(ctx, `INSERT INTO `+types+` (id) VALUES (2)`)
	// Streamed: larger than logical_decoding_work_mem, with a rolled-back
	// subtransaction whose rows must vanish and one that is kept.
	f.bigTransaction(ctx, big)
	// Streamed and aborted: nothing may come out.
	tx, err := f.repl.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+big+` SELECT i, repeat(md5(i::text), 4) FROM generate_series(5001, 8000) i`); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	f.exec(ctx, `INSERT INTO `+rows+` VALUES (99, 'end', NULL, NULL)`)

	got := run.collect(t, 60*time.Second, hasRow("rows", 99))
	checkOrder(t, got)

	var bigRows []schemas.Change
	var rest []schemas.Change
	for _, c := range got {
		if c.Table == big {
			bigRows = append(bigRows, c)
		} else {
			rest = append(rest, c)
		}
	}
	checkBig(t, bigRows)
	f.checkStreamed(ctx)

	ts := time.Date(2024, 2, 29, 10, 34, 56, 789012000, time.UTC)
	u, _ := schemas.ParseUUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
	typesNull := map[string]any{"id": int64(2)}
	for _, c := range []string{"n", "tz", "d", "dinf", "tm", "ts", "iv", "u", "b", "jb", "js", "arr", "tarr", "r", "e", "f8", "bo", "i8", "ip"} {
		typesNull[c] = nil
	}
	want := []view{
		{"rows", schemas.OpCreate, nil, map[string]any{"id": int64(1), "name": "a", "big": bigText}},
		{"rows", schemas.OpCreate, nil, map[string]any{"id": int64(2), "name": "b", "big": nil}},
		{"rows", schemas.OpUpdate, nil, map[string]any{"id": int64(1), "name": "a2", "big": schemas.Unchanged}},
		{"rows", schemas.OpUpdate, map[string]any{"id": int64(2)}, map[string]any{"id": int64(3), "name": "b", "big": nil}},
		{"rows", schemas.OpDelete, map[string]any{"id": int64(3)}, nil},
		{"trunc", schemas.OpCreate, nil, map[string]any{"id": int64(1)}},
		{"trunc", schemas.OpTruncate, nil, nil},
		{"trunc", schemas.OpTruncate, nil, nil}, // one TRUNCATE of two tables: one event each
		{"trunc2", schemas.OpTruncate, nil, nil},
		{"full", schemas.OpCreate, nil, map[string]any{"id": int64(1), "v": "x"}},
		{"full", schemas.OpUpdate, map[string]any{"id": int64(1), "v": "x"}, map[string]any{"id": int64(1), "v": "y"}},
		{"full", schemas.OpDelete, map[string]any{"id": int64(1), "v": "y"}, nil},
		{"rows", schemas.OpSchemaChange, nil, nil},
		{"rows", schemas.OpCreate, nil, map[string]any{"id": int64(4), "name": "d", "big": nil, "extra": int64(42)}},
		{"types", schemas.OpCreate, nil, map[string]any{
			"id": int64(1), "n": schemas.Decimal("12345678901234567890.000100"), "tz": ts,
			"d": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "dinf": schemas.PosInfinity,
			"tm": schemas.TimeOfDay(13*3600_000_000 + 5*60_000_000 + 7_000_000 + 250), "ts": time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
			"iv": schemas.Interval{Months: 14, Days: -3, Micros: 3_600_000_001}, "u": u, "b": []byte{0, 1, 0xfe, 0xff},
			"jb": schemas.JSON(`{"a": [1, 2.5, "x"]}`), "js": schemas.JSON(`{"k":1}`), "arr": []any{int64(1), nil, int64(3)},
			"tarr": []any{"a b", nil}, "r": schemas.Range{Lower: int64(1), Upper: int64(10), HasLower: true, HasUpper: true, LowerInclusive: true},
			"e": "happy", "f8": 1.5e-7, "bo": true, "i8": int64(-9223372036854775808), "ip": "10.1.2.3",
		}},
		{"types", schemas.OpCreate, nil, typesNull},
		{"rows", schemas.OpCreate, nil, map[string]any{"id": int64(99), "name": "end", "big": nil, "extra": nil}},
	}
	gotViews := views(f.name, rest)
	if len(gotViews) != len(want) {
		for _, v := range gotViews {
			t.Logf("got %+v", v)
		}
		t.Fatalf("got %d changes besides the big table, want %d", len(gotViews), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(gotViews[i], want[i]) {
			t.Errorf("change %d:\n got %#v\nwant %#v", i, gotViews[i], want[i])
		}
	}
	checkColumns(t, rest, mood)

	// The slot is acknowledged up to the last commit, and never beyond
	// what the pipeline holds durable.
	last := got[len(got)-1].Position.LSN
	deadline := time.Now().Add(10 * time.Second)
	for f.confirmedFlush(ctx) < last && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if cf, d := f.confirmedFlush(ctx), run.pipe.Durable().LSN; cf < last || cf > d {
		t.Fatalf("confirmed_flush_lsn %s: want ≥ last commit %s and ≤ durable %s", cf, last, d)
	}
}

// bigText is a value that PostgreSQL stores out of line (TOAST).
func (f *fixture) bigText(ctx context.Context) string {
	var s string
	if err := f.repl.QueryRow(ctx, `SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i`).Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// bigTransaction inserts rows 1-2000, 3001-3500 (in a released savepoint)
// and rolls back 2001-3000 (in a savepoint), in one streamed transaction.
func (f *fixture) bigTransaction(ctx context.Context, big string) {
	tx, err := f.repl.Begin(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, sql := range []string{
		`INSERT INTO ` + big + ` SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 2000) i`,
		`SAVEPOINT gone`,
		`INSERT INTO ` + big + ` SELECT i, repeat(md5(i::text), 4) FROM generate_series(2001, 3000) i`,
		`ROLLBACK TO SAVEPOINT gone`,
		`SAVEPOINT kept`,
		`INSERT INTO ` + big + ` SELECT i, repeat(md5(i::text), 4) FROM generate_series(3001, 3500) i`,
		`RELEASE SAVEPOINT kept`,
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			f.t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func checkBig(t *testing.T, cs []schemas.Change) {
	t.Helper()
	if len(cs) != 2500 {
		t.Fatalf("big transaction: %d changes, want 2500 (1-2000 and 3001-3500)", len(cs))
	}
	for i, c := range cs {
		want := int64(i + 1)
		if i >= 2000 {
			want = int64(i + 1001)
		}
		if c.Op != schemas.OpCreate || c.After[0] != want || c.After[1] != strings.Repeat(md5hex(want), 4) {
			t.Fatalf("big change %d = %s id %v, want insert of %d", i, c.Op, c.After[0], want)
		}
		if c.Position != cs[0].Position || c.Seq != uint32(i) {
			t.Fatalf("big change %d at %s seq %d, want one transaction at %s", i, c.Position, c.Seq, cs[0].Position)
		}
	}
}

// checkOrder: positions never go back, and within a position Seq counts up.
func checkOrder(t *testing.T, cs []schemas.Change) {
	t.Helper()
	for i := 1; i < len(cs); i++ {
		a, b := cs[i-1], cs[i]
		switch {
		case b.Position.LSN < a.Position.LSN:
			t.Fatalf("change %d at %s after %s", i, b.Position, a.Position)
		case b.Position == a.Position && b.Seq != a.Seq+1:
			t.Fatalf("change %d seq %d after %d in one transaction", i, b.Seq, a.Seq)
		case b.Position != a.Position && b.Seq != 0:
			t.Fatalf("change %d opens a transaction with seq %d", i, b.Seq)
		}
		if b.CommitTime.IsZero() || b.Source != "origin" || b.TxID == 0 {
			t.Fatalf("change %d lacks commit time, source or xid: %+v", i, b)
		}
	}
}

func checkColumns(t *testing.T, cs []schemas.Change, mood string) {
	t.Helper()
	for _, c := range cs {
		if strings.HasSuffix(c.Table, "_full") {
			// REPLICA IDENTITY FULL flags every column; the key is still
			// the primary key.
			if !c.Columns[0].Key || c.Columns[1].Key {
				t.Errorf("full-identity table key flags = %v, %v; want id only", c.Columns[0].Key, c.Columns[1].Key)
			}
		}
		if !strings.HasSuffix(c.Table, "_types") {
			continue
		}
		fams := map[string]schemas.Family{}
		for _, col := range c.Columns {
			fams[col.Name] = col.Family
			if col.Name == "id" && !col.Key {
				t.Errorf("id is not marked as key")
			}
			if col.Name == "e" && col.Type != "public."+mood {
				t.Errorf("enum column type = %q, want public.%s", col.Type, mood)
			}
			if col.Name == "arr" && col.Elem != schemas.FamilyInt {
				t.Errorf("int[] element family = %q", col.Elem)
			}
		}
		want := map[string]schemas.Family{"n": schemas.FamilyNumeric, "tz": schemas.FamilyTimestampTZ, "u": schemas.FamilyUUID,
			"b": schemas.FamilyBytes, "jb": schemas.FamilyJSON, "arr": schemas.FamilyArray, "r": schemas.FamilyRange, "e": schemas.FamilyText, "ip": schemas.FamilyText}
		for name, fam := range want {
			if fams[name] != fam {
				t.Errorf("column %s family = %q, want %q", name, fams[name], fam)
			}
		}
		// Every family also survives the JSON encoding.
		if _, err := schemas.MarshalChange(&c); err != nil {
			t.Errorf("encode %s: %v", c.Table, err)
		}
	}
}

func md5hex(i int64) string {
	return fmt.Sprintf("%x", md5sum(fmt.Sprint(i)))
}

// checkStreamed proves the big transactions really went through the
// streaming protocol (v2 Stream Start/Commit/Abort), per the server's own
// statistics for the slot.
func (f *fixture) checkStreamed(ctx context.Context) {
	f.t.Helper()
	var n int64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := f.super.QueryRow(ctx, `SELECT coalesce(stream_txns, 0) FROM pg_stat_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&n); err == nil && n >= 2 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("pg_stat_replication_slots.stream_txns = %d, want ≥ 2 (the committed and the aborted big transaction)", n)
}
