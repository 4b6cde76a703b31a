package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

// refreshRoles are the roles of a refresh test: app reads the tables
// (with output settings of its own as role defaults, reported to clients
// by ParameterStatus), other too but is not granted to the refresh
// login, refresh is the login refresh-ahead uses.
type refreshRoles struct {
	app, other, refresh string
	pw                  string
}

// makeRefreshRoles creates the roles and grants them the tables; they are
// dropped after the fixture's cleanup.
func makeRefreshRoles(t *testing.T, f *upFixture, tables []string) refreshRoles {
	t.Helper()
	r := refreshRoles{app: f.name + "_app", other: f.name + "_other", refresh: f.name + "_refresh", pw: testenv.UniqueName("pw")}
	stmts := []string{
		"CREATE ROLE " + r.app + " LOGIN PASSWORD '" + r.pw + "'",
		"ALTER ROLE " + r.app + " SET TimeZone = 'Asia/Tokyo'",
		"ALTER ROLE " + r.app + " SET DateStyle = 'SQL, DMY'",
		"ALTER ROLE " + r.app + " SET IntervalStyle = 'sql_standard'",
		"CREATE ROLE " + r.other + " LOGIN PASSWORD '" + r.pw + "'",
		"CREATE ROLE " + r.refresh + " LOGIN PASSWORD '" + r.pw + "'",
		"GRANT " + r.app + " TO " + r.refresh,
	}
	for _, tbl := range tables {
		stmts = append(stmts, "GRANT SELECT ON "+f.table(tbl)+" TO "+r.app+", "+r.other)
	}
	execRoles(t, f, stmts, r.refresh, r.other, r.app)
	return r
}

// execRoles runs stmts, which create roles, and drops the roles after the
// fixture's cleanup.
func execRoles(t *testing.T, f *upFixture, stmts []string, roles ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range stmts {
		if _, err := f.super.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		bg := context.Background()
		c, err := pgx.Connect(bg, testenv.PostgresURL(t))
		if err != nil {
			t.Errorf("drop roles: %v", err)
			return
		}
		defer c.Close(bg)
		for _, role := range roles {
			_, _ = c.Exec(bg, "DROP OWNED BY "+role)
			_, _ = c.Exec(bg, "DROP ROLE IF EXISTS "+role)
		}
	})
}

// makeRefreshLogin creates a refresh login that is a member of member and
// returns its URL.
func makeRefreshLogin(t *testing.T, f *upFixture, member string) string {
	t.Helper()
	role, pw := f.name+"_refresh", testenv.UniqueName("pw")
	execRoles(t, f, []string{"CREATE ROLE " + role + " LOGIN PASSWORD '" + pw + "'", "GRANT " + member + " TO " + role}, role)
	return asRole(testenv.PostgresURL(t), role, pw)
}

// asRole rewrites a URL's user and password.
func asRole(raw, role, pw string) string {
	u, _ := url.Parse(raw)
	u.User = url.UserPassword(role, pw)
	return u.String()
}

const refreshDDL = `
	CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL, ts timestamptz, d date, f float8, b bytea, iv interval, n numeric, s text);
	INSERT INTO {name}_t SELECT g, g * 10, timestamptz '2026-05-17 10:00:00+00' + g * interval '1 hour 7 minutes',
		date '2026-01-01' + g, g / 3.0, decode(repeat('ab', g), 'hex'), g * interval '1 day 2 hours', g * 1.25,
		CASE WHEN g % 2 = 0 THEN NULL ELSE 'row ' || g END
	FROM generate_series(1, 10) g;`

// startRefreshUp starts freshet up with refresh-ahead through a refresh
// login created for the test.
func startRefreshUp(t *testing.T, hooks materialize.Hooks, bound time.Duration) (*upFixture, refreshRoles) {
	t.Helper()
	var roles refreshRoles
	f := startUpWith(t, []string{"t"}, refreshDDL, hooks, bound, func(f *upFixture, cfg *embedded.Config) {
		roles = makeRefreshRoles(t, f, []string{"t"})
		cfg.RefreshURL = asRole(testenv.PostgresURL(t), roles.refresh, roles.pw)
	})
	return f, roles
}

// TestFreshetUpRefresh: a hot cached read invalidated by an UPDATE at the
// origin is back in the cache without any client read (refresh counter),
// the next read is a hit with the new value; a cold entry is not
// refreshed; for prepared (BDPES) and simple-protocol clients. A role the
// refresh login is not a member of is not refreshed, and says so.
func TestFreshetUpRefresh(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, roles := startRefreshUp(t, materialize.Hooks{}, 0)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		hot, cold := 2*i+1, 2*i+2
		t.Run(mode.String(), func(t *testing.T) {
			c, err := pgx.Connect(ctx, asRole(f.url(), roles.app, roles.pw))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			read := func(id, want int, wantHit bool) {
				t.Helper()
				before := m.Stats().Hits
				var v int
				if err := c.QueryRow(ctx, sel, mode, id).Scan(&v); err != nil {
					t.Fatal(err)
				}
				if hit := m.Stats().Hits > before; v != want || hit != wantHit {
					t.Fatalf("id %d: got %d hit %v, want %d hit %v; stats %+v", id, v, hit, want, wantHit, m.Stats())
				}
			}
			f.waitWatermark(ctx)
			read(hot, hot*10, false)
			for range 5 {
				read(hot, hot*10, true)
			}
			read(cold, cold*10, false)
			read(cold, cold*10, true)
			before, misses := m.RefreshStats(), m.Stats().Misses
			if _, err := f.super.Exec(ctx, "UPDATE "+f.table("t")+" SET v = v + 1 WHERE id IN ($1, $2)", hot, cold); err != nil {
				t.Fatal(err)
			}
			f.waitWatermark(ctx)
			deadline := time.Now().Add(5 * time.Second)
			for m.RefreshStats().Done == before.Done && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // a refresh of the cold entry would show by now
			after := m.RefreshStats()
			if after.Done != before.Done+1 || m.Stats().Misses != misses {
				t.Fatalf("refreshes %d -> %d (want +1, the hot entry only), client misses %d -> %d (want none); %+v",
					before.Done, after.Done, misses, m.Stats().Misses, after)
			}
			read(hot, hot*10+1, true)
			read(cold, cold*10+1, false)
		})
	}
	t.Run("not a member", func(t *testing.T) {
		c, err := pgx.Connect(ctx, asRole(f.url(), roles.other, roles.pw))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		const id = 9
		for range 6 {
			var v int
			if err := c.QueryRow(ctx, sel, id).Scan(&v); err != nil {
				t.Fatal(err)
			}
		}
		before := m.RefreshStats()
		if _, err := f.super.Exec(ctx, "UPDATE "+f.table("t")+" SET v = v + 1 WHERE id = $1", id); err != nil {
			t.Fatal(err)
		}
		f.waitWatermark(ctx)
		deadline := time.Now().Add(5 * time.Second)
		for m.RefreshStats().RoleFailures == before.RoleFailures && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if s := m.RefreshStats(); s.RoleFailures != before.RoleFailures+1 || s.Done != before.Done {
			t.Fatalf("refresh as a role the login is not a member of: %+v (before %+v)", s, before)
		}
	})
}

// rawClient is a client speaking the protocol by hand through freshet,
// to send exactly the message shapes the cache keys.
type rawClient struct {
	t        *testing.T
	conn     io.ReadWriter
	rd       *bufio.Reader
	params   map[string]string
	database string
}

func dialHijacked(ctx context.Context, t *testing.T, connString string) *rawClient {
	t.Helper()
	pc, err := pgconn.Connect(ctx, connString)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hj.Conn.Close() })
	return &rawClient{t: t, conn: hj.Conn, rd: bufio.NewReader(hj.Conn), params: hj.ParameterStatuses, database: hj.Config.Database}
}

// roundTrip sends msgs and returns the raw response up to ReadyForQuery.
func (c *rawClient) roundTrip(msgs ...pgproto3.FrontendMessage) []byte {
	c.t.Helper()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			c.t.Fatal(err)
		}
	}
	if _, err := c.conn.Write(buf); err != nil {
		c.t.Fatal(err)
	}
	var out []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c.rd, hdr); err != nil {
			c.t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(c.rd, body); err != nil {
			c.t.Fatal(err)
		}
		if hdr[0] == 'E' {
			c.t.Fatalf("error response: %q", body)
		}
		out = append(append(out, hdr...), body...)
		if hdr[0] == 'Z' {
			return out
		}
	}
}

// settings are the client session's output settings as the front end
// keys them (ParameterStatus at startup).
func (c *rawClient) settings() cache.Settings {
	var s cache.Settings
	for i, name := range cache.SettingNames {
		s[i] = c.params[name]
	}
	return s
}

// TestFreshetUpRefreshBytes: for every cached message shape, the response
// the refresher produces for a key is byte for byte the one a client's
// fill captured through the front end (and that a hit then serves), with
// the role's own TimeZone, DateStyle and IntervalStyle, text and binary
// parameters and results, NULLs.
func TestFreshetUpRefreshBytes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, roles := startRefreshUp(t, materialize.Hooks{}, 0)
	m := f.node.Materializer()
	rf, err := postgres.NewRefresher(postgres.RefresherConfig{URL: asRole(testenv.PostgresURL(t), roles.refresh, roles.pw)})
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	cols := "SELECT id, v, ts, d, f, b, iv, n, s, ts::date - d AS days FROM " + f.table("t")
	sel := cols + " WHERE id = $1"
	f.waitWatermark(ctx)
	c := dialHijacked(ctx, t, asRole(f.url(), roles.app, roles.pw))
	if got := c.params["TimeZone"]; got != "Asia/Tokyo" {
		t.Fatalf("the app role's TimeZone is %q: role defaults not applied", got)
	}
	c.roundTrip(&pgproto3.Parse{Name: "s1", Query: sel, ParameterOIDs: []uint32{23}}, &pgproto3.Sync{})
	binaryID := binary.BigEndian.AppendUint32(nil, 4)
	for _, tc := range []struct {
		name    string
		shape   string
		sql     string
		formats []int16
		value   []byte
		results []int16
	}{
		{"simple query", "", cols + " WHERE id = 3", nil, nil, nil},
		{"bind execute, text", "BES", sel, nil, []byte("1"), nil},
		{"bind describe portal execute, binary results", "BDPES", sel, nil, []byte("2"), []int16{1}},
		{"bind describe portal execute, mixed results, binary parameter", "BDPES", sel, []int16{1}, binaryID, []int16{0, 1, 0, 1, 0, 1, 0, 1, 0, 0}},
		{"bind describe statement execute", "BDSES", sel, nil, []byte("5"), []int16{0}},
		{"NULL parameter", "BES", sel, nil, nil, nil},
		{"unnamed parse bind execute", "PBES", sel, nil, []byte("1"), nil},
		{"unnamed parse bind describe portal execute", "PBDPES", sel, nil, []byte("2"), []int16{1}},
		{"unnamed parse bind describe statement execute", "PBDSES", sel, nil, []byte("5"), []int16{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var msgs []pgproto3.FrontendMessage
			if tc.shape == "" {
				msgs = []pgproto3.FrontendMessage{&pgproto3.Query{String: tc.sql}}
			} else {
				stmt := "s1"
				if strings.HasPrefix(tc.shape, "P") {
					stmt = ""
					msgs = append(msgs, &pgproto3.Parse{Query: tc.sql, ParameterOIDs: []uint32{23}})
				}
				msgs = append(msgs, &pgproto3.Bind{PreparedStatement: stmt, ParameterFormatCodes: tc.formats,
					Parameters: [][]byte{tc.value}, ResultFormatCodes: tc.results})
				switch strings.TrimPrefix(tc.shape, "P") {
				case "BDPES":
					msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P'})
				case "BDSES":
					msgs = append(msgs, &pgproto3.Describe{ObjectType: 'S', Name: stmt})
				}
				msgs = append(msgs, &pgproto3.Execute{}, &pgproto3.Sync{})
			}
			fill := c.roundTrip(msgs...)
			hits := m.Stats().Hits
			served := c.roundTrip(msgs...)
			if m.Stats().Hits != hits+1 {
				t.Fatalf("the second read was not a hit: %+v", m.Stats())
			}
			if !bytes.Equal(fill, served) {
				t.Fatalf("the hit served other bytes than the fill captured:\n%q\n%q", fill, served)
			}
			req := &materialize.RefreshRequest{Database: c.database, Role: roles.app, SQL: tc.sql, Shape: tc.shape,
				ResultFormats: tc.results, Settings: c.settings()}
			if tc.shape != "" {
				req.Params = materialize.Params{Types: []uint32{23}, Formats: tc.formats, Values: [][]byte{tc.value}}
			}
			got, err := rf.Refresh(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, fill) {
				t.Fatalf("refresh bytes differ from the client's fill:\nrefresh %q\nfill    %q", got, fill)
			}
			if !strings.Contains(string(fill), "JST") && tc.shape == "" {
				t.Fatalf("the text result does not show the role's TimeZone: %q", fill)
			}
		})
	}
	t.Run("not a member", func(t *testing.T) {
		_, err := rf.Refresh(ctx, &materialize.RefreshRequest{Database: c.database, Role: roles.other, SQL: cols + " WHERE id = 1",
			Settings: c.settings()})
		if !errors.Is(err, materialize.ErrRefreshRole) {
			t.Fatalf("refresh as a role the login is not a member of: %v, want ErrRefreshRole", err)
		}
	})
}
