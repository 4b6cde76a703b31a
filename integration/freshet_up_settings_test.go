package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// railsSets are the statements Rails' PostgreSQL adapter runs on every
// new connection.
var railsSets = []string{
	"SET client_min_messages TO 'warning'",
	"SET standard_conforming_strings = on",
	"SET intervalstyle = iso_8601",
	"SET SESSION timezone TO 'Asia/Tokyo'",
}

// TestFreshetUpSettings: a session that changes settings the key follows
// (time zone, date and interval style, reported back by the origin) or
// that never change an answer's bytes (client_min_messages,
// statement_timeout, ...) is still answered from the cache, under keys of
// its own values, byte for byte what the origin answers with those
// settings. A setting the key does not follow, a custom setting and a
// client encoding other than UTF-8 keep the session off the cache.
func TestFreshetUpSettings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	f := startUpWith(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, at timestamptz NOT NULL, span interval NOT NULL);
		INSERT INTO {name}_t VALUES (1, '2026-01-01 12:00:00+00', '1 day 2 hours');`, materialize.Hooks{}, 5*time.Second,
		func(_ *upFixture, cfg *embedded.Config) { cfg.Registerer = reg })
	m := f.node.Materializer()
	sel := "SELECT at, span FROM " + f.table("t") + " WHERE id = 1"
	query := &pgproto3.Query{String: sel}

	// Rails' connection: the same bytes as the origin's, in Tokyo time
	// and ISO 8601 intervals, and cached.
	through, direct := dialHijacked(ctx, t, f.url()), dialHijacked(ctx, t, testenv.PostgresURL(t))
	for _, set := range railsSets {
		through.roundTrip(&pgproto3.Query{String: set})
		direct.roundTrip(&pgproto3.Query{String: set})
	}
	want := direct.roundTrip(query)
	if !bytes.Contains(want, []byte("2026-01-01 21:00:00+09")) || !bytes.Contains(want, []byte("P1DT2H")) {
		t.Fatalf("the origin's answer in Tokyo with ISO 8601 intervals: %q", want)
	}
	hits := m.Stats().Hits
	for i := range 3 {
		if got := through.roundTrip(query); !bytes.Equal(got, want) {
			t.Fatalf("read %d after Rails' SETs: through freshet %q, direct %q", i, got, want)
		}
	}
	if got := m.Stats().Hits - hits; got < 2 {
		t.Fatalf("%d of 3 reads after Rails' SETs were hits, want at least 2; %+v", got, m.Stats())
	}

	// A client with the default settings shares none of those entries.
	plain, plainDirect := dialHijacked(ctx, t, f.url()), dialHijacked(ctx, t, testenv.PostgresURL(t))
	want = plainDirect.roundTrip(query)
	for i := range 2 {
		if got := plain.roundTrip(query); !bytes.Equal(got, want) {
			t.Fatalf("read %d with the default settings: through freshet %q, direct %q", i, got, want)
		}
	}
	// Changing the time zone back and forth keys each read right.
	for _, tz := range []string{"America/New_York", "UTC", "America/New_York"} {
		set := &pgproto3.Query{String: "SET TIME ZONE '" + tz + "'"}
		through.roundTrip(set)
		direct.roundTrip(set)
		if got, want := through.roundTrip(query), direct.roundTrip(query); !bytes.Equal(got, want) {
			t.Fatalf("in %s: through freshet %q, direct %q", tz, got, want)
		}
	}

	off := func(what string, c *pgx.Conn) {
		t.Helper()
		hits := m.Stats().Hits
		for range 3 {
			var at time.Time
			var span time.Duration
			if err := c.QueryRow(ctx, sel).Scan(&at, &span); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if m.Stats().Hits != hits {
			t.Fatalf("%s: answered from the cache", what)
		}
	}
	for _, set := range []string{"SET extra_float_digits = 0", "SET app.tenant = '7'", "SET bytea_output = 'escape'"} {
		c := f.connect(ctx)
		if _, err := c.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
		off(set, c)
	}

	// Another client encoding: the origin converts the text the client
	// sends, so the constants analysis would see are not the stream's.
	latin := dialHijacked(ctx, t, f.url()+"&client_encoding=LATIN1")
	hits = m.Stats().Hits
	for range 3 {
		latin.roundTrip(query)
	}
	if m.Stats().Hits != hits {
		t.Fatal("a LATIN1 session was answered from the cache")
	}

	// Each session kept off the cache was counted, with why.
	for reason, want := range map[string]float64{"setting": 3, "encoding": 1} {
		if got := counterValue(t, reg, "freshet_pgwire_sessions_uncached_total", "reason", reason); got != want {
			t.Errorf("freshet_pgwire_sessions_uncached_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// counterValue is the value of the counter name{label="value"} in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return metricValue(t, reg, name, map[string]string{label: value})
}

// TestFreshetUpSearchPath: a session that sets its search path (as
// django-tenants does per request, or Rails' schema_search_path) is still
// answered from the cache, each unqualified name resolved through its own
// path, byte for byte what the origin answers; a SET of it inside a
// transaction (which may roll back) makes the session relayed only. With
// a backend per client and with transaction pooling.
func TestFreshetUpSearchPath(t *testing.T) {
	t.Parallel()
	for _, pooled := range []bool{false, true} {
		t.Run(map[bool]string{false: "session", true: "transaction_pooling"}[pooled], func(t *testing.T) {
			t.Parallel()
			searchPath(t, pooled)
		})
	}
}

func searchPath(t *testing.T, txPooling bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := testenv.UniqueName("sp")
	a, b := name+"_a", name+"_b"
	f := startUpWith(t, nil, `
		CREATE SCHEMA `+a+`; CREATE SCHEMA `+b+`;
		CREATE TABLE `+a+`.tenant (id int PRIMARY KEY, v text NOT NULL);
		CREATE TABLE `+b+`.tenant (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO `+a+`.tenant VALUES (1, 'in a');
		INSERT INTO `+b+`.tenant VALUES (1, 'in b');`, materialize.Hooks{}, 5*time.Second,
		func(_ *upFixture, cfg *embedded.Config) {
			cfg.Tables = []string{a + ".tenant", b + ".tenant"}
			if txPooling {
				cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t), TransactionPooling: true}
			}
		})
	t.Cleanup(func() {
		_, _ = f.super.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+a+", "+b+" CASCADE")
	})
	dial := func() *sidePair { return newSidePair(ctx, t, f, testenv.PostgresURL(t), tenantRead) }
	c := dial()
	for _, tc := range []struct{ set, want string }{
		{"SET search_path TO " + a, "in a"},
		{`SET search_path = "` + b + `", public`, "in b"},
		{"SET SCHEMA '" + a + "'", "in a"},
		{"SET search_path TO " + b, "in b"},
	} {
		c.both(tc.set)
		if hits := c.reads(tc.set, tc.want); hits < 2 {
			t.Fatalf("after %s: %d of 3 reads were hits", tc.set, hits)
		}
	}
	// A SET behind another statement of one Query changes the session
	// as much: relayed from then on, still right.
	c2 := dial()
	c2.both("SET search_path TO " + b)
	c2.reads("before a SET behind a SELECT", "in b")
	c2.both("SELECT 1; SET search_path TO " + a)
	if hits := c2.reads("after a SET behind a SELECT", "in a"); hits != 0 {
		t.Fatalf("%d hits after a SET behind a SELECT", hits)
	}
	// Inside a transaction: relayed from then on, still right.
	c.both("BEGIN")
	c.both("SET search_path TO " + a)
	c.both("ROLLBACK")
	if hits := c.reads("after a rolled back SET", "in b"); hits != 0 {
		t.Fatalf("%d hits after a SET of the search path inside a transaction", hits)
	}
}

// tenantRead reads the tenant table of the session's search path.
const tenantRead = "SELECT v FROM tenant WHERE id = 1"

// sidePair is a raw session through freshet and one straight to the
// origin, sent the same statements.
type sidePair struct {
	t               *testing.T
	m               *materialize.Materializer
	read            string
	through, direct *rawClient
}

func newSidePair(ctx context.Context, t *testing.T, f *upFixture, origin, read string) *sidePair {
	return &sidePair{t: t, m: f.node.Materializer(), read: read,
		through: dialHijacked(ctx, t, f.url()), direct: dialHijacked(ctx, t, origin)}
}

// both sends sql to both sessions.
func (p *sidePair) both(sql string) {
	p.t.Helper()
	p.through.roundTrip(&pgproto3.Query{String: sql})
	p.direct.roundTrip(&pgproto3.Query{String: sql})
}

// reads reads three times on both, wants the same bytes, with want in
// them, and returns how many were hits.
func (p *sidePair) reads(what, want string) (hits uint64) {
	p.t.Helper()
	before := p.m.Stats().Hits
	for i := range 3 {
		q := &pgproto3.Query{String: p.read}
		got, exp := p.through.roundTrip(q), p.direct.roundTrip(q)
		if !bytes.Equal(got, exp) || !bytes.Contains(got, []byte(want)) {
			p.t.Fatalf("%s, read %d: through freshet %q, direct %q, want %q", what, i, got, exp, want)
		}
	}
	return p.m.Stats().Hits - before
}

// npgsqlReset is what Npgsql sends when a pooled connection that keeps
// its prepared statements is reused.
const npgsqlReset = "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;CLOSE ALL;UNLISTEN *;SELECT pg_advisory_unlock_all();DISCARD SEQUENCES;DISCARD TEMP"

// TestFreshetUpSessionReset: a session that something made unknown (a
// SET the key does not follow, LISTEN, SET ROLE) is answered from the
// cache again once a session reset is through: DISCARD ALL, as PgBouncer
// in front of freshet or Rails send, or Npgsql's own sequence, which keeps
// prepared statements. Every read is byte for byte the origin's.
func TestFreshetUpSessionReset(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUp(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v float8 NOT NULL);
		INSERT INTO {name}_t VALUES (1, 0.1);`, materialize.Hooks{}, 5*time.Second)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("t") + " WHERE id = 1"
	query := &pgproto3.Query{String: sel}
	through, direct := dialHijacked(ctx, t, f.url()), dialHijacked(ctx, t, testenv.PostgresURL(t))
	both := func(sql string) {
		t.Helper()
		through.roundTrip(&pgproto3.Query{String: sql})
		direct.roundTrip(&pgproto3.Query{String: sql})
	}
	reads := func(what string) (hits uint64) {
		t.Helper()
		before := m.Stats().Hits
		for i := range 3 {
			if got, want := through.roundTrip(query), direct.roundTrip(query); !bytes.Equal(got, want) {
				t.Fatalf("%s, read %d: through freshet %q, direct %q", what, i, got, want)
			}
		}
		return m.Stats().Hits - before
	}
	for _, tc := range []struct{ unknown, reset string }{
		{"SET extra_float_digits = 0", "DISCARD ALL"},
		{"LISTEN " + f.name, "DISCARD ALL"},
		{"SET ROLE pg_read_all_data", npgsqlReset},
		{"SET extra_float_digits = 0", npgsqlReset},
	} {
		if hits := reads("before " + tc.unknown); hits < 2 {
			t.Fatalf("before %s: %d of 3 reads were hits", tc.unknown, hits)
		}
		both(tc.unknown)
		if hits := reads("after " + tc.unknown); hits != 0 {
			t.Fatalf("after %s: %d hits", tc.unknown, hits)
		}
		both(tc.reset)
		// What the session sent while unknown might have written: its
		// next read waits for the watermark (read your writes).
		reads("resolving the fence after " + tc.reset)
		f.waitWatermark(ctx)
		if hits := reads("after " + tc.reset); hits < 2 {
			t.Fatalf("after %s following %s: %d of 3 reads were hits", tc.reset, tc.unknown, hits)
		}
	}
	// A reset inside a transaction fails (or, Npgsql's, may roll back):
	// the session stays unknown.
	both("SET extra_float_digits = 0")
	both("BEGIN")
	both(npgsqlReset)
	both("ROLLBACK")
	if hits := reads("after a reset rolled back"); hits != 0 {
		t.Fatalf("after a reset rolled back: %d hits", hits)
	}
}
