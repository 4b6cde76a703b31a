package kafka_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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

// BenchmarkProduce: changes/s into Kafka with acks=all, 6 partitions,
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
// delivery by a region, at 500 transactions/s; p50 and p99 over 2000.
func BenchmarkFreshness(b *testing.B) {
	const samples, every = 2000, 2 * time.Millisecond
	brokers := testenv.KafkaBrokers(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range b.N {
		topic := testenv.UniqueName("freshet_bench_fresh")
		p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic})
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		sent := map[schemas.Position]time.Time{}
		var lat, acks []time.Duration
		got := make(chan struct{})
		h := kafka.HandlerFunc(func(_ context.Context, ev kafka.Event) error {
			if ev.Kind != kafka.EventChange {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, time.Since(sent[ev.Change.Position]))
			if len(lat) == samples {
				close(got)
			}
			return nil
		})
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: h, FromBeginning: true, MaxWait: 10 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		go func() { _ = c.Run(rctx) }()
		time.Sleep(500 * time.Millisecond) // let the region reach the partitions
		tick := time.NewTicker(every)
		for i := range samples {
			<-tick.C
			bt := batchOf(txn(i, 1, 1000))
			mu.Lock()
			sent[bt.Progress.Position] = time.Now()
			mu.Unlock()
			at := time.Now()
			if err := p.Publish(ctx, bt, func(error) {
				mu.Lock()
				acks = append(acks, time.Since(at))
				mu.Unlock()
			}); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			b.Fatalf("only %d of %d changes arrived", len(lat), samples)
		}
		stop()
		_ = p.Close()
		slices.Sort(lat)
		mu.Lock()
		slices.Sort(acks)
		b.ReportMetric(float64(acks[len(acks)/2].Microseconds())/1000, "ack-p50-ms")
		mu.Unlock()
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
