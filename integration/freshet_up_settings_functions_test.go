package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/materialize"
)

// settingsFunctionsDDL has a search path per schema, a function that sets
// the path, one that calls it, and a trigger that sets it with set_config.
const settingsFunctionsDDL = `
	CREATE SCHEMA a; CREATE SCHEMA b;
	CREATE TABLE a.tenant (id int PRIMARY KEY, v text NOT NULL);
	CREATE TABLE b.tenant (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO a.tenant VALUES (1, 'in a');
	INSERT INTO b.tenant VALUES (1, 'in b');
	CREATE FUNCTION public.to_b() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET search_path TO b; END $$;
	CREATE FUNCTION public.via() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM (SELECT public.to_b()) x $$;
	CREATE TABLE public.audit (id serial PRIMARY KEY, note text);
	CREATE FUNCTION public.audit_path() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM set_config('search_path', 'b', false); RETURN NEW; END $$;
	CREATE TRIGGER audit_path BEFORE INSERT ON public.audit FOR EACH ROW EXECUTE FUNCTION public.audit_path();`

// TestFreshetUpSettingsFunctions: a session that runs one of the origin's
// functions that changes its search path, which PostgreSQL does not report
// (called by name, through another function, as a trigger of a write,
// through the extended protocol), is no longer answered from the cache:
// its reads are the origin's under the new path, byte for byte. Sessions
// that run none stay cached. In a database of its own: such a trigger
// makes every write in its database suspect, other tests' too.
func TestFreshetUpSettingsFunctions(t *testing.T) {
	t.Parallel()
	for _, pooled := range []bool{false, true} {
		t.Run(map[bool]string{false: "session", true: "transaction_pooling"}[pooled], func(t *testing.T) {
			t.Parallel()
			settingsFunctions(t, pooled)
		})
	}
}

func settingsFunctions(t *testing.T, txPooling bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	db := ownDatabase(ctx, t, "setfn")
	f := startUpAt(t, db, nil, settingsFunctionsDDL, materialize.Hooks{}, 5*time.Second,
		func(_ *upFixture, cfg *embedded.Config) {
			cfg.Tables = []string{"a.tenant", "b.tenant"}
			cfg.Registerer = reg
			if txPooling {
				cfg.Clients = front.Clients{AuthURL: db, TransactionPooling: true}
			}
		})
	m := f.node.Materializer()
	dial := func() *sidePair { return newSidePair(ctx, t, f, db, tenantRead) }
	for _, call := range []string{"SELECT public.to_b()", "SELECT public.via()", "INSERT INTO public.audit (note) VALUES ('x')"} {
		p := dial()
		p.both("SET search_path TO a")
		if hits := p.reads("before "+call, "in a"); hits < 2 {
			t.Fatalf("before %s: %d of 3 reads were hits", call, hits)
		}
		p.both(call)
		if txPooling {
			// Another client's transaction takes whatever backend is
			// idle: not the one the function ran on, which stays with
			// its client (pinned), or its reads would run elsewhere.
			hold := dialHijacked(ctx, t, f.url())
			hold.roundTrip(&pgproto3.Query{String: "BEGIN"})
			hold.roundTrip(&pgproto3.Query{String: "SELECT 1"})
			defer hold.roundTrip(&pgproto3.Query{String: "COMMIT"})
		}
		// The first reads after it take a read-your-writes fence, and
		// may be sent to the origin for it; once the watermark is past
		// the fence, nothing but the session's state keeps them there.
		hits := p.reads("after "+call, "in b")
		f.waitWatermark(ctx)
		if hits += p.reads("after "+call+", the watermark past", "in b"); hits != 0 {
			t.Fatalf("after %s: %d hits", call, hits)
		}
	}

	if txPooling {
		// The backends those functions ran on stay with their clients:
		// another client gets one with the default search path.
		other := dialHijacked(ctx, t, f.url())
		for range 3 {
			if got := other.roundTrip(&pgproto3.Query{String: "SHOW search_path"}); !bytes.Contains(got, []byte(`"$user", public`)) {
				t.Fatalf("another client's search path: %q", got)
			}
		}
	}

	// Through the extended protocol (pgx's default).
	c := f.connect(ctx)
	if _, err := c.Exec(ctx, "SET search_path TO a"); err != nil {
		t.Fatal(err)
	}
	var v string
	for range 3 {
		if err := c.QueryRow(ctx, tenantRead).Scan(&v); err != nil || v != "in a" {
			t.Fatalf("before the call, extended: %q, %v", v, err)
		}
	}
	if _, err := c.Exec(ctx, "SELECT public.to_b()"); err != nil {
		t.Fatal(err)
	}
	hits := m.Stats().Hits
	for i := range 4 {
		if err := c.QueryRow(ctx, tenantRead).Scan(&v); err != nil || v != "in b" {
			t.Fatalf("after the call, extended: %q, %v, want in b", v, err)
		}
		if i == 0 {
			f.waitWatermark(ctx)
		}
	}
	if got := m.Stats().Hits - hits; got != 0 {
		t.Fatalf("after the call, extended: %d hits", got)
	}

	// A session that calls none of them is still answered from the cache.
	p := dial()
	p.both("SET search_path TO a")
	if hits := p.reads("a session that calls none", "in a"); hits < 2 {
		t.Fatalf("a session that calls none: %d of 3 reads were hits", hits)
	}
	if got := counterValue(t, reg, "freshet_pgwire_sessions_uncached_total", "reason", "settings_function"); got != 4 {
		t.Errorf(`freshet_pgwire_sessions_uncached_total{reason="settings_function"} = %v, want 4`, got)
	}
}
