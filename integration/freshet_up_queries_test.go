package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpQueries: the node lists the query templates it saw (its
// /queries): a cached point read with its hits, a read that cannot be
// cached with the reason, and never the values clients sent.
func TestFreshetUpQueries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startUp(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second)
	c := f.connect(ctx)
	readsAreCached(ctx, t, f, c, 4)
	if _, err := c.Exec(ctx, "SELECT v, now() FROM "+f.table("t")+" WHERE id = 9"); err != nil {
		t.Fatal(err)
	}
	var point, clock *materialize.QueryStats
	qs := f.node.Queries()
	for i, q := range qs {
		switch q.Query {
		case "SELECT v FROM " + f.table("t") + " WHERE id = $1":
			point = &qs[i]
		case "SELECT v, now() FROM " + f.table("t") + " WHERE id = $1":
			clock = &qs[i]
		}
		if strings.Contains(q.Query, "= 9") {
			t.Errorf("a client's value in /queries: %q", q.Query)
		}
	}
	if point == nil || clock == nil {
		t.Fatalf("queries %+v: want the point read and the now() read", qs)
	}
	if point.Hits < 2 || point.HitRatio <= 0 {
		t.Errorf("point read: %+v, want its hits", *point)
	}
	if clock.Hits != 0 || clock.Bypassed == 0 || clock.Reason == "" {
		t.Errorf("now() read: %+v, want bypassed with a reason", *clock)
	}
	t.Logf("now() read goes to the origin because %q", clock.Reason)
}
