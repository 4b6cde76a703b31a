package materialize

import (
	"sync"
	"time"
)

// slidingSecond counts events over the last second in ten 100 ms
// buckets: a rate that follows load within a tenth of a second without
// remembering every event.
type slidingSecond struct {
	mu      sync.Mutex
	buckets [slidingBuckets]bucket
}

type bucket struct {
	at int64 // the bucket's index since the epoch, in bucketWidth units
	n  uint64
}

const (
	slidingBuckets = 10
	bucketWidth    = time.Second / slidingBuckets
)

func (s *slidingSecond) add(now time.Time, n uint64) {
	at := now.UnixNano() / int64(bucketWidth)
	b := &s.buckets[at%slidingBuckets]
	s.mu.Lock()
	if b.at != at {
		b.at, b.n = at, 0
	}
	b.n += n
	s.mu.Unlock()
}

// sum is the count over the second before now (the current bucket
// included).
func (s *slidingSecond) sum(now time.Time) uint64 {
	at := now.UnixNano() / int64(bucketWidth)
	var total uint64
	s.mu.Lock()
	for _, b := range s.buckets {
		if b.at > at-slidingBuckets && b.at <= at {
			total += b.n
		}
	}
	s.mu.Unlock()
	return total
}

// refreshLimiter admits refreshes at no more than floor + share × the
// origin queries the front end sent over the last second: refresh-ahead
// adds a bounded fraction to what the origin already serves, and under
// no load still a floor so a quiet system keeps its hot entries warm.
type refreshLimiter struct {
	share, floor float64
	origin       slidingSecond
	admitted     slidingSecond
	mu           sync.Mutex
}

// originQuery records n queries the front end sent to the origin.
func (l *refreshLimiter) originQuery(now time.Time, n uint64) { l.origin.add(now, n) }

// allow admits one refresh at now, or refuses it when the last second's
// refreshes already reach the limit.
func (l *refreshLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := l.floor + l.share*float64(l.origin.sum(now))
	if float64(l.admitted.sum(now))+1 > limit {
		return false
	}
	l.admitted.add(now, 1)
	return true
}
