package integration

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPostgresLogicalReplicationSmoke proves the test PostgreSQL is a real
// server with logical decoding, reachable by the non-superuser REPLICATION
// role over SCRAM: it creates a publication and slots as that role, makes a
// change and sees it decoded.
func TestPostgresLogicalReplicationSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := mustConnectPG(ctx, t, testenv.PostgresReplURL(t))

	var super bool
	mustQueryRow(ctx, t, conn, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`, &super)
	if super {
		t.Fatal("the replication role must not be a superuser")
	}

	table := testenv.UniqueName("smoke")
	textSlot, binSlot, pub := table+"_text", table+"_bin", table+"_pub"
	mustExec(ctx, t, conn, `CREATE TABLE `+table+` (id int PRIMARY KEY, v text)`)
	mustExec(ctx, t, conn, `CREATE PUBLICATION `+pub+` FOR TABLE `+table)
	mustExec(ctx, t, conn, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, textSlot)
	mustExec(ctx, t, conn, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, binSlot)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, s := range []string{textSlot, binSlot} {
			_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s)
		}
		_, _ = conn.Exec(ctx, `DROP PUBLICATION `+pub)
		_, _ = conn.Exec(ctx, `DROP TABLE `+table)
		conn.Close(ctx)
	})

	mustExec(ctx, t, conn, `INSERT INTO `+table+` VALUES (1, 'hello')`)

	t.Run("test_decoding sees the insert", func(t *testing.T) {
		rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL)`, textSlot)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		want := "table public." + table + ": INSERT: id[integer]:1 v[text]:'hello'"
		if !slices.Contains(changes, want) {
			t.Fatalf("peek_changes = %q, want a line %q", changes, want)
		}
	})

	t.Run("pgoutput decodes with pglogrepl", func(t *testing.T) {
		rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
			'proto_version', '1', 'publication_names', $2)`, binSlot, pub)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		var ins *pglogrepl.InsertMessage
		for _, m := range msgs {
			decoded, err := pglogrepl.Parse(m)
			if err != nil {
				t.Fatalf("pglogrepl.Parse: %v", err)
			}
			if im, ok := decoded.(*pglogrepl.InsertMessage); ok {
				ins = im
			}
		}
		if ins == nil {
			t.Fatalf("no InsertMessage among %d pgoutput messages", len(msgs))
		}
		cols := ins.Tuple.Columns
		if len(cols) != 2 || string(cols[0].Data) != "1" || string(cols[1].Data) != "hello" {
			t.Fatalf("insert tuple = %+v, want (1, hello)", cols)
		}
	})

	t.Run("replication protocol connection", func(t *testing.T) {
		rc := mustConnectReplication(ctx, t, testenv.PostgresReplURL(t))
		sys, err := pglogrepl.IdentifySystem(ctx, rc)
		if err != nil {
			t.Fatalf("IDENTIFY_SYSTEM: %v", err)
		}
		if sys.DBName != "freshet_test" || sys.XLogPos == 0 {
			t.Fatalf("IDENTIFY_SYSTEM = %+v", sys)
		}
	})
}

// TestPostgresRejectsWrongPassword proves password authentication is on:
// a wrong password gets SQLSTATE 28P01, not a connection.
func TestPostgresRejectsWrongPassword(t *testing.T) {
	u, err := url.Parse(testenv.PostgresReplURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "not-the-password")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("err = %v, want SQLSTATE 28P01 invalid_password", err)
	}
}

func mustConnectPG(ctx context.Context, t *testing.T, connURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return conn
}

func mustConnectReplication(ctx context.Context, t *testing.T, connURL string) *pgconn.PgConn {
	t.Helper()
	sep := "?"
	if strings.Contains(connURL, "?") {
		sep = "&"
	}
	conn, err := pgconn.Connect(ctx, connURL+sep+"replication=database")
	if err != nil {
		t.Fatalf("replication connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustQueryRow(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, dest ...any) {
	t.Helper()
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
