package integration

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpUnnamedStatements: reads on the unnamed statement (pgx's
// exec modes, as lib/pq, node-postgres and JDBC send them) are answered
// from the cache, correct and invalidated like any other.
func TestFreshetUpUnnamedStatements(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUp(t, []string{"u"}, `
		CREATE TABLE {name}_u (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_u SELECT g, g * 10 FROM generate_series(1, 5) g;`, materialize.Hooks{}, 5*time.Second)
	f.waitWatermark(ctx)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("u") + " WHERE id = $1"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(f.url())
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			before := m.Stats().Hits
			for range 3 {
				var v int
				if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != 10 {
					t.Fatalf("read %d, %v; want 10", v, err)
				}
			}
			if m.Stats().Hits < before+2 {
				t.Errorf("hits %d -> %d over three reads: the unnamed statement was not answered from the cache", before, m.Stats().Hits)
			}
		})
	}

	// The same messages, raw, through freshet and straight to the origin:
	// the bytes must match, also when a later request uses the unnamed
	// statement a cached answer kept from the origin.
	through, direct := dialHijacked(ctx, t, f.url()), dialHijacked(ctx, t, testenv.PostgresURL(t))
	text := func(id int) [][]byte { return [][]byte{[]byte(strconv.Itoa(id))} }
	parseExec := func(id int) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sel}, &pgproto3.Bind{Parameters: text(id)},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	same := func(what string, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		if got, want := through.roundTrip(msgs...), direct.roundTrip(msgs...); !bytes.Equal(got, want) {
			t.Fatalf("%s: through freshet %q, direct %q", what, got, want)
		}
	}
	same("first Parse-Bind-Describe-Execute", parseExec(2)...)
	hits := m.Stats().Hits
	same("the same again", parseExec(2)...)
	if m.Stats().Hits != hits+1 {
		t.Fatalf("hits %d -> %d: the repeated request was not a hit", hits, m.Stats().Hits)
	}
	// Now the origin's unnamed statement is another one, and the client's
	// is sel again through a hit that never reached the origin: a Bind of
	// it must run sel, not the origin's.
	other := "SELECT v, id FROM " + f.table("u") + " WHERE id = $1"
	same("another unnamed statement", &pgproto3.Parse{Query: other}, &pgproto3.Bind{Parameters: text(4)},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	hits = m.Stats().Hits
	same("sel again, a hit", parseExec(2)...)
	if m.Stats().Hits != hits+1 {
		t.Fatalf("hits %d -> %d: the repeated request was not a hit", hits, m.Stats().Hits)
	}
	same("Bind-Execute of the unnamed statement after a hit", &pgproto3.Bind{Parameters: text(3)}, &pgproto3.Execute{}, &pgproto3.Sync{})
	same("Describe of the unnamed statement", &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	same("Bind-Execute again, now a hit or a fill", &pgproto3.Bind{Parameters: text(3)}, &pgproto3.Execute{}, &pgproto3.Sync{})

	// A session whose first request is a hit: its origin backend has no
	// unnamed statement at all until freshet sends it.
	fresh, fresh2 := dialHijacked(ctx, t, f.url()), dialHijacked(ctx, t, testenv.PostgresURL(t))
	hits = m.Stats().Hits
	if got, want := fresh.roundTrip(parseExec(2)...), fresh2.roundTrip(parseExec(2)...); !bytes.Equal(got, want) || m.Stats().Hits != hits+1 {
		t.Fatalf("first request of a session: hit %v, through freshet %q, direct %q", m.Stats().Hits == hits+1, got, want)
	}
	for _, msgs := range [][]pgproto3.FrontendMessage{
		{&pgproto3.Bind{Parameters: text(5)}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Bind{Parameters: text(1)}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	} {
		if got, want := fresh.roundTrip(msgs...), fresh2.roundTrip(msgs...); !bytes.Equal(got, want) {
			t.Fatalf("use of the unnamed statement after a first-request hit: through freshet %q, direct %q", got, want)
		}
	}

	// Invalidated like any other entry.
	if _, err := f.super.Exec(ctx, "UPDATE "+f.table("u")+" SET v = 21 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	f.waitWatermark(ctx)
	same("after an origin write", parseExec(2)...)
	if got := through.roundTrip(parseExec(2)...); !bytes.Contains(got, []byte("21")) {
		t.Fatalf("after the update: %q", got)
	}
}
