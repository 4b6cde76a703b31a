package postgres

import (
	"context"
	"testing"
)

// BenchmarkOriginPoolLend is what transaction pooling pays the pool per
// transaction: lend an idle backend, take it back.
func BenchmarkOriginPoolLend(b *testing.B) {
	for _, bound := range []int{0, 64} {
		name := "unbounded"
		if bound > 0 {
			name = "bounded"
		}
		b.Run(name, func(b *testing.B) {
			fake := &backends{t: b}
			p, err := NewOriginPool(PoolConfig{MaxOpen: bound})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					oc, err := p.Acquire(ctx, "k", fake.dial)
					if err != nil {
						b.Error(err)
						return
					}
					p.Release(ctx, "k", oc, false)
				}
			})
		})
	}
}

// BenchmarkEnded is what lending an idle backend pays to find whether
// the origin ended it meanwhile: one non-blocking peek at its socket.
func BenchmarkEnded(b *testing.B) {
	oc, _ := tcpBackend(b)
	b.ReportAllocs()
	for b.Loop() {
		if ended(oc) {
			b.Fatal("an idle backend taken for ended")
		}
	}
}
