package integration

import (
	"bytes"
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpTransactionPoolingCaches: under transaction pooling
// (--auth-url, --pool-mode transaction) reads are answered from the cache
// in every pgx exec mode, and a hit takes no origin backend at all, so a
// pool of clients reads cached rows without queueing for backends. A
// client reads its own write at once; other clients see it once the
// stream has it; a SET, a transaction and the unnamed statement behave as
// they do on PostgreSQL.
func TestFreshetUpTransactionPoolingCaches(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t), TransactionPooling: true}
	})
	app := f.name + "_app" // the origin backends of these clients, in pg_stat_activity
	through := f.url() + "&application_name=" + url.QueryEscape(app)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	read := func(c *pgx.Conn, id int) int {
		t.Helper()
		var v int
		if err := c.QueryRow(ctx, sel, id).Scan(&v); err != nil {
			t.Fatalf("read of row %d: %v", id, err)
		}
		return v
	}

	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for i, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			c := connectMode(ctx, t, through, mode)
			before := m.Stats().Hits
			for range 3 {
				if v := read(c, i+1); v != i+1 {
					t.Fatalf("row %d read %d", i+1, v)
				}
			}
			if hits := m.Stats().Hits - before; hits < 2 {
				t.Fatalf("%d cache hits of 3 reads, want at least 2", hits)
			}
		})
	}

	t.Run("hits take no backend", func(t *testing.T) {
		c1, c2 := mustConnect(ctx, t, through), mustConnect(ctx, t, through)
		read(c1, 7) // cached now, if it was not
		read(c2, 7) // pgx prepares its statement on first use
		// Every statement a backend runs moves its query_start: a read
		// sent to the origin, or a backend attached for one, would show.
		snapshot := func() map[int]time.Time {
			rows, err := f.super.Query(ctx, "SELECT pid, query_start FROM pg_stat_activity WHERE application_name = $1 AND query_start IS NOT NULL", app)
			if err != nil {
				t.Fatal(err)
			}
			out := map[int]time.Time{}
			for rows.Next() {
				var pid int
				var at time.Time
				if err := rows.Scan(&pid, &at); err != nil {
					t.Fatal(err)
				}
				out[pid] = at
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		// Another test's DDL may empty the cache meanwhile (a miss then
		// rightly takes a backend): the check counts only when every
		// read was a hit.
		for attempt := 0; ; attempt++ {
			before, hits := snapshot(), m.Stats().Hits
			for range 20 {
				if v := read(c2, 7); v != 7 {
					t.Fatalf("row 7 read %d", v)
				}
			}
			if got := m.Stats().Hits - hits; got != 20 {
				if attempt == 10 {
					t.Fatalf("%d of 20 reads were hits", got)
				}
				continue
			}
			after := snapshot()
			for pid, at := range after {
				if was, ok := before[pid]; !ok || !at.Equal(was) {
					t.Fatalf("backend %d ran a statement during 20 cache hits (query_start %v -> %v): %v -> %v", pid, was, at, before, after)
				}
			}
			break
		}
	})

	t.Run("read your writes", func(t *testing.T) {
		writer, other := mustConnect(ctx, t, through), mustConnect(ctx, t, through)
		read(writer, 8)
		read(other, 8)
		if _, err := writer.Exec(ctx, "UPDATE "+f.table("t")+" SET v = 80 WHERE id = 8"); err != nil {
			t.Fatal(err)
		}
		if v := read(writer, 8); v != 80 {
			t.Fatalf("the writer's next read: %d, want its own write 80", v)
		}
		f.waitWatermark(ctx)
		if v := read(other, 8); v != 80 {
			t.Fatalf("another client's read after the stream passed the write: %d, want 80", v)
		}
	})

	t.Run("transactions and settings", func(t *testing.T) {
		c := mustConnect(ctx, t, through)
		read(c, 9)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE "+f.table("t")+" SET v = 90 WHERE id = 9"); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := tx.QueryRow(ctx, sel, 9).Scan(&v); err != nil || v != 90 {
			t.Fatalf("read inside the transaction: %d, %v; want its own write 90", v, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if v := read(c, 9); v != 9 {
			t.Fatalf("read after the rollback: %d, want 9", v)
		}
		// A setting the key does not follow: that session is relayed.
		if _, err := c.Exec(ctx, "SET extra_float_digits = 1"); err != nil {
			t.Fatal(err)
		}
		hits := m.Stats().Hits
		for range 3 {
			if v := read(c, 9); v != 9 {
				t.Fatalf("read after SET: %d", v)
			}
		}
		if m.Stats().Hits != hits {
			t.Fatal("a session whose settings changed was answered from the cache")
		}
	})

	t.Run("the unnamed statement", func(t *testing.T) {
		// Raw messages through freshet and straight to the origin: the
		// bytes must match, also when a Bind uses the unnamed statement
		// a cached answer kept from the origin.
		rc, direct := dialHijacked(ctx, t, through), dialHijacked(ctx, t, testenv.PostgresURL(t))
		text := func(id int) [][]byte { return [][]byte{[]byte(strconv.Itoa(id))} }
		parseExec := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sel}, &pgproto3.Bind{Parameters: text(2)},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		same := func(what string, msgs ...pgproto3.FrontendMessage) {
			t.Helper()
			if got, want := rc.roundTrip(msgs...), direct.roundTrip(msgs...); !bytes.Equal(got, want) {
				t.Fatalf("%s: through freshet %q, direct %q", what, got, want)
			}
		}
		same("Parse-Bind-Describe-Execute", parseExec...)
		hits := m.Stats().Hits
		same("the same again", parseExec...)
		if m.Stats().Hits != hits+1 {
			t.Fatal("the repeated request was not a hit")
		}
		same("Bind-Execute of the unnamed statement after a hit", &pgproto3.Bind{Parameters: text(3)}, &pgproto3.Execute{}, &pgproto3.Sync{})
		same("Describe of the unnamed statement", &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})

		// lib/pq's way: Parse-Describe, then Bind-Execute in another
		// request, which may reach a backend where another client's
		// unnamed statement is: its answer must not be this one's fill.
		other := dialHijacked(ctx, t, through)
		same("Parse-Describe", &pgproto3.Parse{Query: sel}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
		other.roundTrip(&pgproto3.Parse{Query: "SELECT v, id FROM " + f.table("t") + " WHERE id = $1"},
			&pgproto3.Bind{Parameters: text(1)}, &pgproto3.Execute{}, &pgproto3.Sync{})
		for i := range 3 {
			same("Bind-Execute "+strconv.Itoa(i), &pgproto3.Bind{Parameters: text(4)}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}
	})
}
