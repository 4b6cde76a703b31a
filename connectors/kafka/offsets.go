package kafka

import (
	"context"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

// resumePoint is where a partition resumes: the offset after the last
// marker the region applied, and that marker's position (kept in the
// commit's metadata so duplicates before it can be dropped after a restart).
type resumePoint struct {
	offset int64 // -1: nothing committed
	marker schemas.Position
	// Between sessions of one Run, a partition resumes exactly where it
	// stopped rather than at its last marker, so nothing is delivered
	// twice: next is the offset to read (-1: use offset), seen the
	// latest record delivered from it.
	next int64
	seen seqPos
}

// fetchCommitted reads the region's committed offsets.
func fetchCommitted(ctx context.Context, c *kafkago.Client, group, topic string, n int) ([]resumePoint, error) {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	res, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of %s: %w", group, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("fetch committed offsets of %s: %w", group, res.Error)
	}
	out := make([]resumePoint, n)
	for i := range out {
		out[i].offset, out[i].next = -1, -1
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("fetch committed offset of %s/%d: %w", topic, p.Partition, p.Error)
		}
		if p.Partition < 0 || p.Partition >= n || p.CommittedOffset < 0 {
			continue
		}
		rp := resumePoint{offset: p.CommittedOffset, next: -1}
		if p.Metadata != "" {
			if err := rp.marker.UnmarshalJSON([]byte(p.Metadata)); err != nil {
				return nil, fmt.Errorf("committed metadata of %s/%d: %w", topic, p.Partition, err)
			}
		}
		out[p.Partition] = rp
	}
	return out, nil
}

// commitOffsets stores where each partition resumes. The group is used for
// offset storage only (no member, generation -1), so regions never split
// partitions between them.
func commitOffsets(ctx context.Context, c *kafkago.Client, group, topic string, pts []resumePoint) error {
	var commits []kafkago.OffsetCommit
	for i, rp := range pts {
		if rp.offset < 0 {
			continue
		}
		meta, _ := rp.marker.MarshalJSON()
		commits = append(commits, kafkago.OffsetCommit{Partition: i, Offset: rp.offset, Metadata: string(meta)})
	}
	if len(commits) == 0 {
		return nil
	}
	res, err := c.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{
		GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{topic: commits},
	})
	if err != nil {
		return fmt.Errorf("commit offsets of %s: %w", group, err)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("commit offset of %s/%d: %w", topic, p.Partition, p.Error)
		}
	}
	return nil
}

// logBounds lists the first and next offsets of every partition.
func logBounds(ctx context.Context, c *kafkago.Client, topic string, n int) (first, last []int64, err error) {
	reqs := make([]kafkago.OffsetRequest, 0, 2*n)
	for i := range n {
		reqs = append(reqs, kafkago.FirstOffsetOf(i), kafkago.LastOffsetOf(i))
	}
	res, err := c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	first, last = make([]int64, n), make([]int64, n)
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		if p.Partition >= 0 && p.Partition < n {
			first[p.Partition], last[p.Partition] = p.FirstOffset, p.LastOffset
		}
	}
	return first, last, nil
}

// regionClient is the client a region consumer uses for metadata and
// offsets.
func regionClient(brokers []string, sec Security) *kafkago.Client {
	return sec.client(brokers, 10*time.Second)
}

// regionGroup is the consumer group under which a region stores its
// offsets (and nothing else: no member ever joins it).
func regionGroup(region string) string { return "freshet-region-" + region }
