// Command envprobe checks that a service of the test environment is really
// serving, for the launcher under integration/env. It never sleeps to guess:
// it succeeds only once the service has answered.
//
//	envprobe kafka-ready -brokers 127.0.0.1:9092
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

const readyTopic = "freshet-env-ready"

func main() {
	if len(os.Args) < 2 || os.Args[1] != "kafka-ready" {
		fmt.Fprintln(os.Stderr, "usage: envprobe kafka-ready -brokers host:port")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("kafka-ready", flag.ExitOnError)
	brokers := fs.String("brokers", "", "bootstrap broker host:port")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline for one attempt")
	_ = fs.Parse(os.Args[2:])
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := kafkaRoundTrip(ctx, *brokers); err != nil {
		fmt.Fprintln(os.Stderr, "kafka not ready:", err)
		os.Exit(1)
	}
}

// kafkaRoundTrip creates the probe topic if needed, produces one message
// with acks=all and reads that same message back.
func kafkaRoundTrip(ctx context.Context, broker string) error {
	if err := ensureTopic(ctx, broker); err != nil {
		return err
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	want := hex.EncodeToString(token)

	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: readyTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(want)}); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	conn, err := kafka.DialLeader(ctx, "tcp", broker, readyTopic, 0)
	if err != nil {
		return fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	last, err := conn.ReadLastOffset()
	if err != nil {
		return fmt.Errorf("last offset: %w", err)
	}
	if _, err := conn.Seek(last-1, kafka.SeekAbsolute); err != nil {
		return fmt.Errorf("seek: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	msg, err := conn.ReadMessage(1 << 20)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if string(msg.Value) != want {
		return fmt.Errorf("read back %q, produced %q", msg.Value, want)
	}
	return nil
}

func ensureTopic(ctx context.Context, broker string) error {
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	cc, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("dial controller: %w", err)
	}
	defer cc.Close()
	err = cc.CreateTopics(kafka.TopicConfig{Topic: readyTopic, NumPartitions: 1, ReplicationFactor: 1})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic: %w", err)
	}
	return nil
}
