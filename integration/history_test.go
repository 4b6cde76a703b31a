package integration

import (
	"strings"
	"testing"
	"time"
)

// TestHistoryStaleReport checks the checker itself: a read of version 1
// begun more than the bound after version 2 was acknowledged is stale,
// one begun within the bound is not, and the report names the endpoint,
// the row and the writes around.
func TestHistoryStaleReport(t *testing.T) {
	t0 := time.Now()
	h := &history{acks: map[int][]ack{}}
	h.add(7, 1, t0)
	h.add(7, 2, t0.Add(100*time.Millisecond))
	reads := []readRecord{
		{id: 7, ver: 1, start: t0.Add(500 * time.Millisecond), via: 1},  // within the bound
		{id: 7, ver: 1, start: t0.Add(1500 * time.Millisecond), via: 1}, // stale
		{id: 7, ver: 2, start: t0.Add(1500 * time.Millisecond), via: 0},
	}
	n, first := h.stale(reads, time.Second)
	if n != 1 || !strings.Contains(first, "row 7: read version 1") || !strings.Contains(first, "version 2 committed") {
		t.Fatalf("stale: %d, %q", n, first)
	}
	report := h.describeStale(reads, time.Second)
	if !strings.Contains(report, "endpoint 1 row 7: 1 stale reads") || !strings.Contains(report, " 2@") {
		t.Fatalf("report: %q", report)
	}
}
