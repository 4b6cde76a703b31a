package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

// TestLaggingStreamMarkersClaimNoLaterTime starts the stream well after a
// heartbeat and a later commit were written, as a restarted ingest that
// catches up does. The heartbeat's marker comes before the commit, so it
// must not claim a time after that commit: a region trusting such a
// marker would serve results missing the commit as if they were fresh.
// Markers used to carry the time the walsender sent them.
func TestLaggingStreamMarkersClaimNoLaterTime(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "lag")
	f.exec(ctx, `CREATE TABLE `+f.table("lag")+` (id int PRIMARY KEY)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	f.exec(ctx, postgres.HeartbeatSQL, postgres.HeartbeatPrefix)
	time.Sleep(300 * time.Millisecond)
	f.exec(ctx, `INSERT INTO `+f.table("lag")+` VALUES (1)`)
	time.Sleep(time.Second) // the stream starts a second after the commit

	_, run := f.startReader(t, schemas.Position{})
	var before []schemas.Progress
	for {
		b, err := run.sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the commit: %v (markers so far %+v)", err, before)
		}
		if len(b.Changes) == 0 {
			before = append(before, b.Progress)
			continue
		}
		commit := b.Progress
		if len(before) == 0 {
			t.Fatal("no marker for the heartbeat written before the commit")
		}
		for _, p := range before {
			if p.CommitTime.After(commit.CommitTime) {
				t.Errorf("marker at %s claims %s, after the commit at %s (%s) that it does not cover",
					p.Position, p.CommitTime.Format(time.StampMicro), commit.Position, commit.CommitTime.Format(time.StampMicro))
			}
		}
		t.Logf("%d markers before the commit, the first at %s claiming %s; the commit at %s",
			len(before), before[0].Position, before[0].CommitTime.Format(time.StampMicro), commit.CommitTime.Format(time.StampMicro))
		return
	}
}
