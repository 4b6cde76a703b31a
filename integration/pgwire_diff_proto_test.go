package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// protoBatch is one write of raw frontend messages; the transcript then
// reads until as many ReadyForQuery as the batch has Syncs and Queries
// (or, with none, until the reply to a Flush stops).
type protoBatch []pgproto3.FrontendMessage

var protoScript = []protoBatch{
	// Named statement and portal, max_rows: PortalSuspended, then the rest.
	{
		&pgproto3.Parse{Name: "s1", Query: "SELECT g, g * 2 AS twice FROM generate_series(1, 5) g WHERE g > $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
		&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1", ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{1, 0}},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Execute{Portal: "p1", MaxRows: 2},
		&pgproto3.Execute{Portal: "p1", MaxRows: 2},
		&pgproto3.Execute{Portal: "p1"},
		&pgproto3.Close{ObjectType: 'P', Name: "p1"},
		&pgproto3.Sync{},
	},
	// Unnamed statement, binary parameter, Flush before Sync.
	{
		&pgproto3.Parse{Query: "SELECT $1::int8 + 1"},
		&pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 0, 0, 0, 0, 41}}, ResultFormatCodes: []int16{1}},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	},
	{&pgproto3.Sync{}},
	// An error discards everything up to the Sync; the next batch works.
	{
		&pgproto3.Parse{Name: "bad", Query: "SELECT 1/0"},
		&pgproto3.Bind{PreparedStatement: "bad"},
		&pgproto3.Execute{},
		&pgproto3.Parse{Name: "never", Query: "SELECT 2"},
		&pgproto3.Bind{PreparedStatement: "never"},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	},
	{&pgproto3.Describe{ObjectType: 'S', Name: "never"}, &pgproto3.Sync{}},
	// Pipelined: two Syncs in one write, a transaction across them.
	{
		&pgproto3.Query{String: "BEGIN"},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("3")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT nonexistent_column"},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "ROLLBACK"},
	},
	// Close the statement; using it afterwards fails.
	{&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Sync{}},
	// Function call (int4pl, oid 177) on the session's backend.
	{&pgproto3.FunctionCall{Function: 177, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("2"), []byte("3")}, ResultFormatCode: 0}},
	// Empty query and a multi-statement simple query with an error.
	{&pgproto3.Query{String: ""}},
	{&pgproto3.Query{String: "SELECT 1; SELECT 1/0; SELECT 3"}},
}

func expectedReady(b protoBatch) int {
	n := 0
	for _, m := range b {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query, *pgproto3.FunctionCall:
			n++
		}
	}
	return n
}

// runProtoScript sends protoScript over conn's raw protocol and records
// every backend message, with the fields a client sees.
func runProtoScript(ctx context.Context, t *testing.T, conn *pgconn.PgConn) *transcript {
	t.Helper()
	tr := &transcript{}
	fe := conn.Frontend()
	for i, batch := range protoScript {
		tr.add("> batch %d", i)
		for _, m := range batch {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		want := expectedReady(batch)
		for got := 0; got < want || (want == 0 && got == 0); {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			msg, err := conn.ReceiveMessage(rctx)
			cancel()
			if err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
			tr.add("  %s", describeMsg(msg))
			switch msg.(type) {
			case *pgproto3.ReadyForQuery:
				got++
			case *pgproto3.CommandComplete:
				if want == 0 {
					got = 1 // a Flush-only batch ends with its Execute
				}
			}
		}
	}
	return tr
}

func describeMsg(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		s := "RowDescription"
		for _, f := range m.Fields {
			s += fmt.Sprintf(" %s:%d:%d", f.Name, f.DataTypeOID, f.Format)
		}
		return s
	case *pgproto3.DataRow:
		return fmt.Sprintf("DataRow %q", m.Values)
	case *pgproto3.ErrorResponse:
		return "ErrorResponse " + m.Code + " " + m.Message
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs)
	case *pgproto3.FunctionCallResponse:
		return fmt.Sprintf("FunctionCallResponse %q", m.Result)
	default:
		return fmt.Sprintf("%T", msg)
	}
}

// TestPgwireDifferentialProtocol drives the extended protocol by hand
// (named and unnamed statements and portals, Describe, max_rows and
// PortalSuspended, format codes, Flush, pipelining, discard-until-Sync,
// Close, FunctionCall, empty and multi-statement queries) directly and
// through freshet, in session and transaction pooling, and compares every
// message.
func TestPgwireDifferentialProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	direct := testenv.PostgresURL(t)
	run := func(url string) *transcript {
		conn, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		return runProtoScript(ctx, t, conn)
	}
	want := run(direct)
	all := strings.Join(want.lines, "\n")
	for _, must := range []string{"PortalSuspended", "ParameterDescription [23]", "FunctionCallResponse \"5\"", "ErrorResponse 22012", "EmptyQueryResponse", "ReadyForQuery T", "ErrorResponse 26000"} {
		if !strings.Contains(all, must) {
			t.Fatalf("the direct transcript lacks %q: the script does not exercise it\n%s", must, all)
		}
	}
	t.Run("session", func(t *testing.T) {
		p := startProxy(t, pgwire.Config{})
		diffTranscripts(t, want, run(p.url(t, direct)))
	})
	t.Run("transaction pooling", func(t *testing.T) {
		p, _ := startPooledProxy(t, pgwire.Config{Mode: pgwire.TransactionMode})
		diffTranscripts(t, want, run(p.url(t, direct)))
	})
}
