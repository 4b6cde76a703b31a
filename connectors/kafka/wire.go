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
// partition: a truncate or schema change concerns the whole table, a
// catalog change any table, and an
// update that changes the primary key concerns two keys that may hash to
// different partitions.
func broadcast(c *schemas.Change) bool {
	switch c.Op {
	case schemas.OpTruncate, schemas.OpSchemaChange, schemas.OpCatalogChange:
		return true
	case schemas.OpUpdate:
		if c.Before == nil {
			return false // no old key sent: the key did not change
		}
		var buf [128]byte
		old, okOld := appendKey(buf[:0], c.Columns, c.Before, nil)
		n := len(old)
		both, okCur := appendKey(old, c.Columns, c.After, c.Before)
		return !okOld || !okCur || string(both[:n]) != string(both[n:])
	}
	return false
}

// partitionKey is the record key of a keyed change: source, schema, table
// and the primary key values. It only has to be deterministic for one
// freshet version, since it serves the hash balancer alone.
func partitionKey(c *schemas.Change) []byte {
	return appendPartitionKey(make([]byte, 0, len(c.Source)+len(c.Schema)+len(c.Table)+3+32), c)
}

func appendPartitionKey(dst []byte, c *schemas.Change) []byte {
	img, fallback := c.After, c.Before
	if c.Op == schemas.OpDelete {
		img, fallback = c.Before, nil
	}
	dst = append(dst, c.Source...)
	dst = append(dst, 0)
	dst = append(dst, c.Schema...)
	dst = append(dst, 0)
	dst = append(dst, c.Table...)
	dst = append(dst, 0)
	dst, _ = appendKey(dst, c.Columns, img, fallback)
	return dst
}

// appendKey appends the key columns' values of img, taking a value the
// image does not carry (unchanged TOAST, absent) from fallback. ok is false
// when a key value is known in neither, or the table has no key columns.
func appendKey(dst []byte, cols []schemas.Column, img, fallback []any) (key []byte, ok bool) {
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
		dst = appendKeyValue(dst, v)
	}
	return dst, ok && n > 0
}

// appendKeyValue appends v as fmt's "%T:%v\x00" does, without fmt for the
// common key types: the keys, and so the partitions, stay what they were.
func appendKeyValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case int64:
		dst = append(dst, "int64:"...)
		dst = strconv.AppendInt(dst, x, 10)
	case string:
		dst = append(dst, "string:"...)
		dst = append(dst, x...)
	default:
		return fmt.Appendf(dst, "%T:%v\x00", v, v)
	}
	return append(dst, 0)
}

// changeHeaders are the headers of every keyed change record. Shared:
// kafka-go only reads them.
var changeHeaders = []kafkago.Header{{Key: headerKind, Value: []byte(kindChange)}}

// Arena sizes: a write's record values and keys are carved from chunks of
// arenaSize bytes, a new one when less than arenaMin is left, instead of
// two allocations per record. A record that does not fit in what is left
// gets its own allocation.
const (
	arenaSize = 64 << 10
	arenaMin  = 4 << 10
)

// changeMessage encodes c, addressed to partition, or to its key's
// partition when partition is negative. The value and key are carved from
// arena, which is returned with them appended.
func changeMessage(c *schemas.Change, partition int, arena []byte) (kafkago.Message, []byte, error) {
	if cap(arena)-len(arena) < arenaMin {
		arena = make([]byte, 0, arenaSize)
	}
	v, err := schemas.AppendChange(arena[len(arena):], c)
	if err != nil {
		return kafkago.Message{}, arena, err
	}
	v, arena = carve(arena, v)
	m := kafkago.Message{Value: v, Headers: changeHeaders}
	if partition >= 0 {
		m.Headers = []kafkago.Header{changeHeaders[0], partitionHeader(partition)}
		return m, arena, nil
	}
	m.Key, arena = carve(arena, appendPartitionKey(arena[len(arena):], c))
	return m, arena, nil
}

// carve takes b, just appended to arena's spare capacity, into arena when
// it fit there (else append gave b its own array), capped so that nothing
// appended to it later can overwrite what follows.
func carve(arena, b []byte) (out, rest []byte) {
	if len(b) <= cap(arena)-len(arena) {
		arena = arena[:len(arena)+len(b)]
	}
	return b[:len(b):len(b)], arena
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
