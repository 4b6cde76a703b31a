package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/materialize"
)

func TestTrackSQL(t *testing.T) {
	tests := []struct {
		name    string
		sql     string
		parse   bool
		pinned  bool
		tracked bool
	}{
		{name: "select", sql: "SELECT 1"},
		{name: "set is replayed", sql: "SET search_path = app, public", tracked: true},
		{name: "reset is replayed", sql: "reset TimeZone", tracked: true},
		{name: "set local pins", sql: "SET LOCAL work_mem = '1MB'", pinned: true},
		{name: "set transaction pins", sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", pinned: true},
		{name: "set in a multi-statement pins", sql: "SET a.b = 1; SELECT 1", pinned: true},
		{name: "set through Parse pins", sql: "SET a.b = 1", parse: true, pinned: true},
		{name: "temp table", sql: "CREATE TEMP TABLE t (i int)", pinned: true},
		{name: "temporary table", sql: "create temporary table t (i int)", pinned: true},
		{name: "plain table", sql: "CREATE TABLE t (i int)"},
		{name: "session advisory lock", sql: "SELECT pg_advisory_lock(1)", pinned: true},
		{name: "transaction advisory lock", sql: "SELECT pg_advisory_xact_lock(1)"},
		{name: "set_config", sql: "SELECT set_config('a.b', '1', false)", pinned: true},
		{name: "listen", sql: "LISTEN ch", pinned: true},
		{name: "sql prepare", sql: "PREPARE p AS SELECT 1", pinned: true},
		{name: "cursor", sql: "DECLARE c CURSOR WITH HOLD FOR SELECT 1", pinned: true},
		{name: "load", sql: "LOAD 'auto_explain'", pinned: true},
		{name: "notify does not pin", sql: "NOTIFY ch"},
		{name: "a function that sets what is not reported", sql: "SELECT app.to_b()", pinned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &session{srv: &Server{settings: settingsFunction("to_b")}, tx: &txState{cur: &OriginConn{}}}
			s.txStatus.Store('I')
			s.trackSQL(tt.sql, tt.parse)
			if s.tx.pinned != tt.pinned || (len(s.tx.sets) == 1) != tt.tracked {
				t.Fatalf("pinned %v tracked %v, want %v %v", s.tx.pinned, s.tx.sets, tt.pinned, tt.tracked)
			}
			if tt.tracked && s.tx.cur.State != s.tx.sig {
				t.Fatal("the backend that ran the SET is not marked with the new state")
			}
		})
	}
}

// settingsFunction is a materialize.SettingsWatcher that knows one
// function, by a substring of the statement.
type settingsFunction string

func (f settingsFunction) MayChangeSettings(st materialize.Statement) bool {
	return strings.Contains(st.SQL, string(f))
}

func TestTrackSQLInTransactionPins(t *testing.T) {
	s := &session{srv: &Server{}, tx: &txState{cur: &OriginConn{}}}
	s.txStatus.Store('T')
	s.trackSQL("SET search_path = x", false)
	if !s.tx.pinned || len(s.tx.sets) != 0 {
		t.Fatal("a SET inside a transaction (which may roll back) must pin, not be replayed")
	}
}

func TestForwardRenamed(t *testing.T) {
	e := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P05", Message: `prepared statement "freshet_ab12" already exists`}
	in, err := e.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := forwardRenamed(bufio.NewReader(bytes.NewReader(in)), w, len(in), "freshet_ab12", "double"); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	var got pgproto3.ErrorResponse
	b := out.Bytes()
	if n := int(binary.BigEndian.Uint32(b[1:5])); n != len(b)-1 {
		t.Fatalf("length field %d for a message of %d bytes", n, len(b))
	}
	if err := got.Decode(b[5:]); err != nil {
		t.Fatal(err)
	}
	if got.Code != "42P05" || got.Message != `prepared statement "double" already exists` {
		t.Errorf("relayed %s %q, want the client's name", got.Code, got.Message)
	}
}
