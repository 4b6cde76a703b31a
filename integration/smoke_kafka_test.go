package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/segmentio/kafka-go"
)

// TestKafkaConsumerGroupSmoke proves the test Kafka is a real broker that
// kafka-go can use the way freshet will: a 3-partition topic, a producer
// with acks=all and a hash balancer, and a consumer group that reads every
// message and commits its offsets.
func TestKafkaConsumerGroupSmoke(t *testing.T) {
	const partitions, messages = 3, 300
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("smoke")
	mustCreateTopic(ctx, t, brokers[0], topic, partitions)

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
	}
	msgs := make([]kafka.Message, messages)
	for i := range msgs {
		// 30 keys, 10 messages each: a hash balancer keeps a key on one partition.
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "key-%d", i%30), Value: []byte(strconv.Itoa(i))}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}

	group := testenv.UniqueName("smoke_group")
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: group, Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	seen := map[string]bool{}
	partitionOf := map[string]int{}
	for len(seen) < messages {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after %d of %d messages: %v", len(seen), messages, err)
		}
		if p, ok := partitionOf[string(m.Key)]; ok && p != m.Partition {
			t.Fatalf("key %s on partitions %d and %d: balancer is not hashing", m.Key, p, m.Partition)
		}
		partitionOf[string(m.Key)] = m.Partition
		seen[string(m.Value)] = true
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close reader: %v", err)
	}
	used := map[int]bool{}
	for _, p := range partitionOf {
		used[p] = true
	}
	if len(used) != partitions {
		t.Fatalf("messages landed on %d partitions, want %d", len(used), partitions)
	}
	assertCommittedToEnd(ctx, t, brokers, group, topic, partitions, messages)
}

// assertCommittedToEnd checks, with a fresh client, that the group's
// committed offsets add up to every produced message.
func assertCommittedToEnd(ctx context.Context, t *testing.T, brokers []string, group, topic string, partitions, messages int) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	total := int64(0)
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("partition %d: %v", p.Partition, p.Error)
		}
		total += p.CommittedOffset
	}
	if total != int64(messages) {
		t.Fatalf("committed offsets sum to %d, want %d", total, messages)
	}
}

func mustCreateTopic(ctx context.Context, t *testing.T, broker, topic string, partitions int) {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}
