package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// scriptedSource emits test transactions 0, 1, ... at a steady pace
// until finish is closed; from then on it stops at the highest one it has
// ever emitted. It emits the same transactions again after a restart.
type scriptedSource struct {
	per, keys int
	pace      time.Duration
	finish    chan struct{}

	mu      sync.Mutex
	emitted int // highest index emitted, -1 none
	final   int // -1 until finish
}

func newScriptedSource(per, keys int, pace time.Duration) *scriptedSource {
	return &scriptedSource{per: per, keys: keys, pace: pace, finish: make(chan struct{}), emitted: -1, final: -1}
}

// last is the index of the last transaction, or -1 while it runs on.
func (s *scriptedSource) last() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLocked()
}

func (s *scriptedSource) lastLocked() int {
	if s.final < 0 {
		select {
		case <-s.finish:
			s.final = s.emitted
		default:
		}
	}
	return s.final
}

// claim reports whether transaction i is to be emitted, and counts it as
// emitted before it is: a transaction handed to the bus may reach Kafka
// even when Emit then fails, so the last one must include it.
func (s *scriptedSource) claim(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.lastLocked(); f >= 0 && i > f {
		return false
	}
	s.emitted = max(s.emitted, i)
	return true
}

func (s *scriptedSource) Stream(ctx context.Context, from schemas.Position, out ingest.Emitter) error {
	i := 0
	for pos(i).Compare(from) <= 0 {
		i++
	}
	for ; ; i++ {
		if !s.claim(i) {
			<-ctx.Done()
			return ctx.Err()
		}
		if err := out.Emit(ctx, txn(i, s.per, s.keys)); err != nil {
			return err
		}
		time.Sleep(s.pace)
	}
}

// ingestLoop runs pipeline + producer, and after a Kafka failure starts
// both again from the durable position, the way freshet ingest does. It
// returns once the source's last transaction is durable.
func ingestLoop(ctx context.Context, t *testing.T, brokers []string, topic string, src *scriptedSource, restarts *int) {
	var durable schemas.Position
	finished := func(d schemas.Position) bool { f := src.last(); return f >= 0 && d.Covers(pos(f)) }
	for !finished(durable) {
		if ctx.Err() != nil {
			t.Errorf("ingest gave up at %s: %v", durable, ctx.Err())
			return
		}
		prod, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic, Partitions: 4, WriteTimeout: 2 * time.Second})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		pipe, err := ingest.New(ingest.Config{Source: src, Bus: prod, Name: testSource, From: durable})
		if err != nil {
			t.Error(err)
			return
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- pipe.Run(runCtx) }()
		for {
			if finished(pipe.Durable()) {
				cancel()
				<-done
				break
			}
			select {
			case err = <-done:
			case <-time.After(10 * time.Millisecond):
				continue
			}
			break
		}
		cancel()
		if d := pipe.Durable(); !d.IsZero() && !durable.Covers(d) {
			durable = d
		}
		_ = prod.Close()
		if err != nil && !errors.Is(err, context.Canceled) {
			*restarts++
			t.Logf("ingest restarts from %s after: %.200v", durable, err)
			time.Sleep(200 * time.Millisecond) // freshet ingest backs off too
		}
	}
}

// TestBrokerRestartDuringLoad stops the broker in the middle of a write
// load and starts it again. The ingest restarts from what Kafka
// acknowledged; a region that ran throughout and a new one reading from the
// start both end with every change of every transaction exactly once, in
// key order, and the final version of every row.
func TestBrokerRestartDuringLoad(t *testing.T) {
	const per, keys = 3, 50
	k := testenv.StartPrivateKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	topic := testenv.UniqueName("freshet_restart")
	live := newRecorder()
	runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: k.Brokers, Topic: topic, Region: "live_" + topic, Handler: live, FromBeginning: true})

	src := newScriptedSource(per, keys, time.Millisecond)
	restarts := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ingestLoop(ctx, t, k.Brokers, topic, src, &restarts)
	}()
	live.waitFor(ctx, t, "the load to reach the region", func(evs []kafka.Event, _ schemas.Position) bool { return len(evs) > 1000 })
	k.Stop(t)
	time.Sleep(2 * time.Second)
	k.Resume(t)
	time.Sleep(time.Second) // the load goes on after the broker is back
	close(src.finish)
	wg.Wait()
	if restarts == 0 {
		t.Error("the ingest never saw the broker go away: the test proved nothing")
	}
	n := src.last() + 1
	t.Logf("%d transactions, %d ingest restarts", n, restarts)

	late := newRecorder()
	runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: k.Brokers, Topic: topic, Region: "late_" + topic, Handler: late, FromBeginning: true})
	for name, rec := range map[string]*recorder{"live": live, "late": late} {
		rec.waitWatermark(ctx, t, pos(n-1))
		checkEveryChangeOnce(t, name, changesOf(rec.snapshot()), n, per, keys)
	}
}

// checkEveryChangeOnce is the per-row version check: every (transaction,
// change) exactly once, versions increasing per key, the last version of
// every key the last transaction that wrote it.
func checkEveryChangeOnce(t *testing.T, region string, changes []*schemas.Change, n, per, keys int) {
	t.Helper()
	seen := map[string]bool{}
	latest := map[int64]int64{}
	for _, c := range changes {
		id := fmt.Sprint(c.Position, "/", c.Seq)
		if seen[id] {
			t.Fatalf("%s: change %s delivered twice", region, id)
		}
		seen[id] = true
		key, version := c.After[0].(int64), c.After[1].(int64)
		if prev, ok := latest[key]; ok && version <= prev {
			t.Fatalf("%s: key %d got version %d after %d", region, key, version, prev)
		}
		latest[key] = version
	}
	if len(seen) != n*per {
		t.Errorf("%s: %d distinct changes, want %d (lost changes)", region, len(seen), n*per)
	}
	want := map[int64]int64{}
	for i := range n {
		for _, c := range txn(i, per, keys).Changes {
			want[c.After[0].(int64)] = int64(i)
		}
	}
	for key, v := range want {
		if latest[key] != v {
			t.Errorf("%s: key %d ends at version %d, want %d", region, key, latest[key], v)
		}
	}
}
