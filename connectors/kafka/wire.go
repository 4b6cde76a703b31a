package kafka

import (
	"encoding/json"
	"fmt"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

// Record headers. Kind says what the value holds; partition, on records
// written to every partition, is the partition the balancer must choose.
const (
	headerKind      = "freshet-kind"
	headerPartition = "freshet-partition"
)

// The kinds of record.
const (
	kindChange   = "change"
	kindProgress = "progress"
	kindReset    = "reset"
)

// broadcast reports whether c has no single key and must go to every
// partition: a truncate or schema change concerns the whole table, and an
// update that changes the primary key concerns two keys that may hash to
// different partitions.
func broadcast(c *schemas.Change) bool {
	switch c.Op {
	case schemas.OpTruncate, schemas.OpSchemaChange:
		return true
	case schemas.OpUpdate:
		if c.Before == nil {
			return false // no old key sent: the key did not change
		}
		old, okOld := keyOf(c.Columns, c.Before, nil)
		cur, okCur := keyOf(c.Columns, c.After, c.Before)
		return !okOld || !okCur || string(old) != string(cur)
	}
	return false
}

// partitionKey is the record key of a keyed change: source, schema, table
// and the primary key values. It only has to be deterministic for one
// freshet version, since it serves the hash balancer alone.
func partitionKey(c *schemas.Change) []byte {
	img, fallback := c.After, c.Before
	if c.Op == schemas.OpDelete {
		img, fallback = c.Before, nil
	}
	k, _ := keyOf(c.Columns, img, fallback)
	dst := make([]byte, 0, len(c.Source)+len(c.Schema)+len(c.Table)+len(k)+3)
	dst = append(dst, c.Source...)
	dst = append(dst, 0)
	dst = append(dst, c.Schema...)
	dst = append(dst, 0)
	dst = append(dst, c.Table...)
	dst = append(dst, 0)
	return append(dst, k...)
}

// keyOf encodes the key columns' values of img, taking a value the image
// does not carry (unchanged TOAST, absent) from fallback. ok is false when
// a key value is known in neither, or the table has no key columns.
func keyOf(cols []schemas.Column, img, fallback []any) (key []byte, ok bool) {
	ok = len(img) == len(cols)
	n := 0
	for i, col := range cols {
		if !col.Key || i >= len(img) {
			continue
		}
		n++
		v := img[i]
		if (schemas.IsUnchanged(v) || schemas.IsAbsent(v)) && i < len(fallback) {
			v = fallback[i]
		}
		if schemas.IsUnchanged(v) || schemas.IsAbsent(v) {
			ok = false
		}
		key = fmt.Appendf(key, "%T:%v\x00", v, v)
	}
	return key, ok && n > 0
}

// changeMessage encodes c, addressed to partition, or to its key's
// partition when partition is negative.
func changeMessage(c *schemas.Change, partition int) (kafkago.Message, error) {
	v, err := schemas.MarshalChange(c)
	if err != nil {
		return kafkago.Message{}, err
	}
	m := kafkago.Message{Value: v, Headers: []kafkago.Header{{Key: headerKind, Value: []byte(kindChange)}}}
	if partition >= 0 {
		m.Headers = append(m.Headers, partitionHeader(partition))
	} else {
		m.Key = partitionKey(c)
	}
	return m, nil
}

// controlMessage encodes a progress marker or reset for one partition.
func controlMessage(kind string, v any, partition int) (kafkago.Message, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return kafkago.Message{}, err
	}
	return kafkago.Message{Value: b, Headers: []kafkago.Header{
		{Key: headerKind, Value: []byte(kind)}, partitionHeader(partition),
	}}, nil
}

func partitionHeader(p int) kafkago.Header {
	return kafkago.Header{Key: headerPartition, Value: strconv.AppendInt(nil, int64(p), 10)}
}

func header(m *kafkago.Message, key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// record is one decoded Kafka record.
type record struct {
	kind     string
	change   *schemas.Change
	progress schemas.Progress
	reset    schemas.Reset
}

// position is the commit position the record belongs to.
func (r *record) position() schemas.Position {
	switch r.kind {
	case kindChange:
		return r.change.Position
	case kindProgress:
		return r.progress.Position
	}
	return r.reset.Position
}

// DecodeError is a record the consumer could not decode; it is skipped.
type DecodeError struct {
	Topic     string
	Partition int
	Offset    int64
	// Schema and Table name the table the record concerned, when its value
	// got far enough to say; empty otherwise.
	Schema, Table string
	Err           error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("kafka record %s/%d@%d: %v", e.Topic, e.Partition, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decodeRecord decodes a freshet record; a failure is a *DecodeError.
func decodeRecord(m *kafkago.Message) (record, error) {
	fail := func(err error) (record, error) {
		de := &DecodeError{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Err: err}
		de.Schema, de.Table = guessTable(m.Value)
		return record{}, de
	}
	kind, ok := header(m, headerKind)
	if !ok {
		return fail(fmt.Errorf("no %s header", headerKind))
	}
	r := record{kind: string(kind)}
	switch r.kind {
	case kindChange:
		c, err := schemas.UnmarshalChange(m.Value)
		if err != nil {
			return fail(err)
		}
		r.change = c
	case kindProgress:
		if err := json.Unmarshal(m.Value, &r.progress); err != nil {
			return fail(fmt.Errorf("progress: %w", err))
		}
	case kindReset:
		if err := json.Unmarshal(m.Value, &r.reset); err != nil {
			return fail(fmt.Errorf("reset: %w", err))
		}
	default:
		return fail(fmt.Errorf("unknown kind %q", kind))
	}
	return r, nil
}

// guessTable reads source.schema and source.table from a value that failed
// to decode, so the table can still be invalidated.
func guessTable(v []byte) (schema, table string) {
	var w struct {
		Source struct {
			Schema string `json:"schema"`
			Table  string `json:"table"`
		} `json:"source"`
	}
	if json.Unmarshal(v, &w) != nil {
		return "", ""
	}
	return w.Source.Schema, w.Source.Table
}
