package kafka_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// benchBatches are txs transactions of per changes each over 10k keys.
func benchBatches(txs, per int) []*ingest.Batch {
	out := make([]*ingest.Batch, txs)
	for i := range out {
		out[i] = batchOf(txn(i, per, 10000))
	}
	return out
}

// BenchmarkProduce: changes/s into Kafka with acks=all, 3 partitions,
// batches of 500 changes published as fast as the producer takes them, a
// marker to every partition after each write.
func BenchmarkProduce(b *testing.B) {
	const txs, per = 400, 500
	brokers := testenv.KafkaBrokers(b)
	ctx := context.Background()
	batches := benchBatches(txs, per)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		b.StopTimer()
		p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: testenv.UniqueName("freshet_bench_produce")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		wg.Add(len(batches))
		for _, bt := range batches {
			if err := p.Publish(ctx, bt, func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			}); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		_ = p.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(txs*per*b.N)/total.Seconds(), "changes/s")
}

// BenchmarkConsumerApply: changes/s a region reads, decodes, dedupes and
// hands to a Handler that does nothing, from a topic of 200k changes.
func BenchmarkConsumerApply(b *testing.B) {
	const txs, per = 400, 500
	brokers := testenv.KafkaBrokers(b)
	ctx := context.Background()
	topic := testenv.UniqueName("freshet_bench_apply")
	p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	batches := benchBatches(txs, per)
	wg.Add(len(batches))
	for _, bt := range batches {
		if err := p.Publish(ctx, bt, func(err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	_ = p.Close()
	last := pos(txs - 1)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		done := make(chan struct{})
		changes := 0
		h := kafka.HandlerFunc(func(_ context.Context, ev kafka.Event) error {
			if ev.Kind == kafka.EventChange {
				changes++
			}
			if ev.Kind == kafka.EventWatermark && ev.Watermark.Position.Covers(last) {
				close(done)
			}
			return nil
		})
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: testenv.UniqueName("bench"), Handler: h, FromBeginning: true})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		start := time.Now()
		res := make(chan error, 1)
		go func() { res <- c.Run(rctx) }()
		select {
		case <-done:
		case err := <-res:
			b.Fatal(err)
		}
		total += time.Since(start)
		cancel()
		<-res
		if changes != txs*per {
			b.Fatalf("%d changes, want %d", changes, txs*per)
		}
	}
	b.ReportMetric(float64(txs*per*b.N)/total.Seconds(), "changes/s")
}

// BenchmarkFreshness: from Publish of a one-change transaction to its
// delivery by a region (p50-ms, p99-ms) and to the region's watermark
// covering it (wm-p50-ms, wm-p99-ms), at 500 transactions/s, 2000
// transactions per run, over all runs, on a topic of the default 3
// partitions. The log breaks the time down by stage (see freshnessStages).
func BenchmarkFreshness(b *testing.B) {
	const samples, every = 2000, 2 * time.Millisecond
	brokers := testenv.KafkaBrokers(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lat := stageLatencies{}
	var resyncs uint64
	for range b.N {
		topic := testenv.UniqueName("freshet_bench_fresh")
		createLogAppendTimeTopic(ctx, b, brokers, topic, 3)
		p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic})
		if err != nil {
			b.Fatal(err)
		}
		st := newStageTimes()
		got, ready := make(chan struct{}), make(chan struct{})
		var once, readyOnce sync.Once
		warmUp := schemas.Position{LSN: pos(0).LSN - 1}
		last := pos(samples - 1)
		h := kafka.HandlerFunc(func(_ context.Context, ev kafka.Event) error {
			switch ev.Kind {
			case kafka.EventChange:
				st.mark("delivered", ev.Change.Position, time.Now())
			case kafka.EventWatermark:
				if ev.Watermark.Position.Covers(warmUp) {
					readyOnce.Do(func() { close(ready) })
				}
				st.watermark(ev.Watermark.Position, time.Now())
				if ev.Watermark.Position.Covers(last) {
					once.Do(func() { close(got) })
				}
			}
			return nil
		})
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: h, FromBeginning: true})
		if err != nil {
			b.Fatal(err)
		}
		kafka.SetStageHooks(p, c, st.hook)
		rctx, stop := context.WithCancel(ctx)
		go func() { _ = c.Run(rctx) }()
		// Time nothing until the region delivers a watermark: a fresh
		// broker's group coordinator may take a few retries to load.
		warm := &ingest.Batch{Progress: schemas.Progress{Source: testSource, Position: warmUp, CommitTime: time.Now()}}
		if err := p.Publish(ctx, warm, func(error) {}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			b.Fatal("the region delivered no watermark")
		}
		tick := time.NewTicker(every)
		for i := range samples {
			<-tick.C
			bt := batchOf(txn(i, 1, 1000))
			st.mark("publish", bt.Progress.Position, time.Now())
			if err := p.Publish(ctx, bt, func(error) { st.mark("done", bt.Progress.Position, time.Now()) }); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			b.Fatalf("the watermark did not reach the last of %d transactions", samples)
		}
		stop()
		_ = p.Close()
		st.addTo(lat)
		resyncs += c.Stats().Resyncs
	}
	lat.report(b)
	b.ReportMetric(float64(resyncs)/float64(b.N), "resyncs/run")
}

// freshnessStages are the intervals BenchmarkFreshness reports, each from
// one stage to a later one (testing shows at most 10 log lines). "write"
// is when the producer handed the change to kafka-go, "append" the
// broker's append time of the change record (millisecond resolution),
// "fetched" when the partition's reader got it, "done" when Publish's done
// ran. "marker" is when the last
// partition's reader got a marker at exactly the transaction's position,
// so only transactions that ended a write have one.
var freshnessStages = []struct{ name, from, to string }{
	{"queue", "publish", "write"},
	{"produce", "write", "append"},
	{"fetch", "append", "fetched"},
	{"merge", "fetched", "delivered"},
	{"delivered", "publish", "delivered"},
	{"done", "publish", "done"},
	{"marker", "publish", "marker"},
	{"watermark", "publish", "watermark"},
}

// stageTimes records when each transaction reached each stage.
type stageTimes struct {
	mu  sync.Mutex
	at  map[schemas.Position]map[string]time.Time
	wm  schemas.Position
	pos []schemas.Position // in publish order
}

func newStageTimes() *stageTimes {
	return &stageTimes{at: map[schemas.Position]map[string]time.Time{}}
}

func (s *stageTimes) mark(stage string, p schemas.Position, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(stage, p, t)
}

// markLocked keeps the first time a stage is reached, except for the
// marker, which counts when the last partition's copy arrives.
func (s *stageTimes) markLocked(stage string, p schemas.Position, t time.Time) {
	m := s.at[p]
	if m == nil {
		m = map[string]time.Time{}
		s.at[p] = m
		s.pos = append(s.pos, p)
	}
	if old, ok := m[stage]; !ok || stage == "marker" && t.After(old) {
		m[stage] = t
	}
}

// hook receives the producer's and consumer's stages.
func (s *stageTimes) hook(stage, kind string, p schemas.Position, kafkaTime time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case kind == "progress" && stage == "fetched":
		s.markLocked("marker", p, now)
	case kind == "change" && stage == "fetched":
		s.markLocked("append", p, kafkaTime)
		s.markLocked(stage, p, now)
	case kind == "" || kind == "change":
		s.markLocked(stage, p, now)
	}
}

// watermark stamps every published transaction the watermark w now covers.
func (s *stageTimes) watermark(w schemas.Position, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pos {
		if w.Covers(p) && !s.wm.Covers(p) {
			s.markLocked("watermark", p, t)
		}
	}
	s.wm = w
}

// stageLatencies are the intervals of freshnessStages, by name, over
// every run of a benchmark.
type stageLatencies map[string][]time.Duration

func (s *stageTimes) addTo(lat stageLatencies) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range freshnessStages {
		for _, p := range s.pos {
			from, ok1 := s.at[p][sg.from]
			to, ok2 := s.at[p][sg.to]
			if ok1 && ok2 {
				lat[sg.name] = append(lat[sg.name], to.Sub(from))
			}
		}
	}
}

// report logs the stages' table and reports the headline metrics. testing
// keeps the first 10 log lines of all of a benchmark's runs, so the table
// is logged only for runs of more than one iteration, not the b.N=1 probe.
func (lat stageLatencies) report(b *testing.B) {
	logf := b.Logf
	if b.N == 1 {
		logf = func(string, ...any) {}
	}
	logf("%-10s %8s %8s %8s %8s %8s  (ms)", "stage", "n", "p50", "p90", "p99", "max")
	for _, sg := range freshnessStages {
		d := lat[sg.name]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		q := func(f float64) float64 { return float64(d[int(f*float64(len(d)-1))].Microseconds()) / 1000 }
		logf("%-10s %8d %8.2f %8.2f %8.2f %8.2f", sg.name, len(d), q(0.5), q(0.9), q(0.99), q(1))
		switch sg.name {
		case "delivered":
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
		case "watermark":
			b.ReportMetric(q(0.5), "wm-p50-ms")
			b.ReportMetric(q(0.99), "wm-p99-ms")
		case "done":
			b.ReportMetric(q(0.5), "ack-p50-ms")
		}
	}
}

// createLogAppendTimeTopic creates a topic whose records carry the
// broker's append time, so a benchmark can tell producing from fetching.
func createLogAppendTimeTopic(ctx context.Context, b *testing.B, brokers []string, topic string, partitions int) {
	b.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "message.timestamp.type", ConfigValue: "LogAppendTime"}},
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		b.Fatalf("create topic %s: %v", topic, err)
	}
}
