package materialize

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		name  string
		sql   string
		class Class
		multi bool
	}{
		{name: "select", sql: "SELECT 1", class: ClassCacheable},
		{name: "lower case after comments", sql: "  -- hi\n /* a /* nested */ comment */ select * from t", class: ClassCacheable},
		{name: "values", sql: "VALUES (1)", class: ClassCacheable},
		{name: "insert", sql: "insert into t values (1)", class: ClassWrite},
		{name: "copy", sql: "COPY t FROM STDIN", class: ClassWrite},
		{name: "ddl", sql: "CREATE TABLE t (i int)", class: ClassWrite},
		{name: "begin", sql: "BEGIN", class: ClassTxControl},
		{name: "commit with semicolon", sql: "COMMIT;", class: ClassTxControl},
		{name: "set", sql: "SET search_path = x", class: ClassSessionState},
		{name: "listen", sql: "LISTEN ch", class: ClassSessionState},
		{name: "prepare", sql: "PREPARE q AS SELECT 1", class: ClassSessionState},
		{name: "show", sql: "SHOW TimeZone", class: ClassOther},
		{name: "with is not proven read-only", sql: "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", class: ClassOther},
		{name: "empty", sql: "", class: ClassOther},
		{name: "only a comment", sql: "-- nothing", class: ClassOther},
		{name: "multi statement", sql: "SELECT 1; SELECT 2", class: ClassOther, multi: true},
		{name: "multi starting with a write", sql: "insert into t values (1); select 1", class: ClassWrite, multi: true},
		{name: "semicolon in a string", sql: "SELECT ';select 2'", class: ClassCacheable},
		{name: "semicolon in a quoted identifier", sql: `SELECT 1 AS ";x"`, class: ClassCacheable},
		{name: "semicolon in a dollar quote", sql: "SELECT $f$ a; b $f$", class: ClassCacheable},
		{name: "semicolon in a comment", sql: "SELECT 1 -- ; select 2", class: ClassCacheable},
		{name: "trailing semicolons and comment", sql: "SELECT 1; ; /* done */", class: ClassCacheable},
		{name: "parameter is not a dollar quote", sql: "SELECT $1; DELETE FROM t", class: ClassOther, multi: true},
		{name: "doubled quote", sql: "SELECT 'it''s; fine'", class: ClassCacheable},
		{name: "unterminated string", sql: "SELECT 'abc; def", class: ClassCacheable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.sql)
			if got.Class != tt.class || got.Multi != tt.multi {
				t.Fatalf("Classify(%q) = %v multi %v, want %v multi %v", tt.sql, got.Class, got.Multi, tt.class, tt.multi)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "select $a$;$a$; x", "'", "/*", "$1;$", "--\n;x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		st := Classify(sql)
		if st.Multi && st.Class == ClassCacheable {
			t.Fatal("a multi-statement string classified cacheable")
		}
		_ = st.Class.String()
	})
}

func BenchmarkClassify(b *testing.B) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	b.SetBytes(int64(len(q)))
	b.ReportAllocs()
	for b.Loop() {
		if Classify(q).Class != ClassCacheable {
			b.Fatal("misclassified")
		}
	}
}
