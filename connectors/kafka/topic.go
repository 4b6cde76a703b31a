package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// ensureTopic creates topic with the given partitions and replication
// factor unless it exists, and returns its partition count (an existing
// topic keeps its own).
func ensureTopic(ctx context.Context, c *kafkago.Client, topic string, partitions, replication int) (int, error) {
	n, err := partitionCount(ctx, c, topic)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, kafkago.UnknownTopicOrPartition) {
		return 0, err
	}
	res, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: replication,
	}}})
	if err != nil {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	// A new topic's partitions get their leaders a moment later; writing
	// or listing offsets before then fails with NotLeaderForPartition.
	for {
		n, err := partitionCount(ctx, c, topic)
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("create topic %s: waiting for leaders: %w", topic, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// partitionCount asks the cluster how many partitions topic has.
func partitionCount(ctx context.Context, c *kafkago.Client, topic string) (int, error) {
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of topic %s: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			return 0, fmt.Errorf("metadata of topic %s: %w", topic, kafkago.LeaderNotAvailable)
		}
		for _, p := range t.Partitions {
			if p.Error != nil {
				return 0, fmt.Errorf("metadata of topic %s/%d: %w", topic, p.ID, p.Error)
			}
			if p.Leader.Host == "" {
				return 0, fmt.Errorf("metadata of topic %s/%d: %w", topic, p.ID, kafkago.LeaderNotAvailable)
			}
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("metadata of topic %s: %w", topic, kafkago.UnknownTopicOrPartition)
}
