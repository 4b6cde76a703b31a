package kafka

import (
	"strconv"

	kafkago "github.com/segmentio/kafka-go"
)

// balancer sends a record with a partition header to that partition and
// every other record to the murmur2 hash of its key (the Java client's
// partitioner). kafka-go's own default is round-robin, which would break
// per-key order.
type balancer struct {
	hash kafkago.Murmur2Balancer
}

func (b *balancer) Balance(m kafkago.Message, partitions ...int) int {
	if v, ok := header(&m, headerPartition); ok {
		if p, err := strconv.Atoi(string(v)); err == nil {
			return p
		}
	}
	return b.hash.Balance(m, partitions...)
}
