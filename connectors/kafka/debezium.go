package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// debeziumUnavailable is what Debezium writes for a TOAST value PostgreSQL
// did not send (unavailable.value.placeholder's default).
const debeziumUnavailable = "__debezium_unavailable_value"

// DecodeDebezium decodes one record of a Debezium table topic (the JSON
// converter, with or without schemas.enable) into a change. key is the
// record's key, which names the primary key columns. It returns nil and no
// error for records that carry nothing to apply: tombstones (a null value
// after a delete, for compaction) and logical decoding messages (op "m").
//
// Debezium sends values in its own representation, which freshet keeps
// rather than guesses at: JSON strings are Text, integral numbers Int,
// other numbers Numeric (exact text), booleans Bool, objects and arrays
// JSON. A column's Type is the schema's logical name or type when the
// record has a schema ("io.debezium.time.MicroTimestamp", "int32").
// Snapshot reads (op "r") are creates. Position is source.lsn, the event's
// own LSN (a PostgreSQL source): Debezium gives no commit end LSN.
func DecodeDebezium(key, value []byte) (*schemas.Change, error) {
	if isNull(value) {
		return nil, nil // tombstone
	}
	payload, schema, err := envelope(value, "op")
	if err != nil {
		return nil, fmt.Errorf("debezium value: %w", err)
	}
	var p struct {
		Before json.RawMessage `json:"before"`
		After  json.RawMessage `json:"after"`
		Source struct {
			Name   string  `json:"name"`
			DB     string  `json:"db"`
			Schema string  `json:"schema"`
			Table  string  `json:"table"`
			TxID   *uint64 `json:"txId"`
			LSN    *uint64 `json:"lsn"`
			TsMs   int64   `json:"ts_ms"`
			TsUs   int64   `json:"ts_us"`
		} `json:"source"`
		Op string `json:"op"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("debezium payload: %w", err)
	}
	op, ok := debeziumOps[p.Op]
	switch {
	case p.Op == "m":
		return nil, nil
	case !ok:
		return nil, fmt.Errorf("debezium payload: unknown op %q", p.Op)
	case p.Source.Table == "":
		return nil, errors.New("debezium payload: source.table missing")
	}
	c := &schemas.Change{Source: p.Source.Name, Schema: p.Source.Schema, Table: p.Source.Table, Op: op}
	if c.Schema == "" {
		c.Schema = p.Source.DB // MySQL: the database is the schema
	}
	if p.Source.LSN != nil {
		c.Position = schemas.Position{LSN: schemas.LSN(*p.Source.LSN)}
	}
	if p.Source.TxID != nil {
		c.TxID = uint32(*p.Source.TxID)
	}
	switch {
	case p.Source.TsUs != 0:
		c.CommitTime = time.UnixMicro(p.Source.TsUs).UTC()
	case p.Source.TsMs != 0:
		c.CommitTime = time.UnixMilli(p.Source.TsMs).UTC()
	}
	keys, err := debeziumKeyNames(key)
	if err != nil {
		return nil, err
	}
	types := debeziumTypes(schema)
	before, err := orderedObject(p.Before)
	if err != nil {
		return nil, fmt.Errorf("debezium before of %s.%s: %w", c.Schema, c.Table, err)
	}
	after, err := orderedObject(p.After)
	if err != nil {
		return nil, fmt.Errorf("debezium after of %s.%s: %w", c.Schema, c.Table, err)
	}
	if err := fillImages(c, before, after, keys, types); err != nil {
		return nil, fmt.Errorf("debezium %s.%s: %w", c.Schema, c.Table, err)
	}
	return c, nil
}

var debeziumOps = map[string]schemas.Op{
	"c": schemas.OpCreate, "r": schemas.OpCreate, "u": schemas.OpUpdate,
	"d": schemas.OpDelete, "t": schemas.OpTruncate,
}

func isNull(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || string(b) == "null"
}

// envelope splits {"schema":..., "payload":...} and accepts a bare payload
// too; a bare payload is recognised by its field marker ("op" for values).
func envelope(b []byte, marker string) (payload, schema json.RawMessage, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, nil, err
	}
	if top == nil {
		return nil, nil, errors.New("not a JSON object")
	}
	if _, bare := top[marker]; marker != "" && bare {
		return b, nil, nil
	}
	pl, ok := top["payload"]
	if _, hasSchema := top["schema"]; ok && hasSchema {
		return pl, top["schema"], nil
	}
	if marker == "" {
		return b, nil, nil
	}
	return nil, nil, fmt.Errorf("neither a payload nor an envelope (no %q, no schema/payload)", marker)
}

// debeziumKeyNames lists the fields of a record key: the primary key.
func debeziumKeyNames(key []byte) (map[string]bool, error) {
	if isNull(key) {
		return nil, nil
	}
	payload, _, err := envelope(key, "")
	if err != nil {
		return nil, fmt.Errorf("debezium key: %w", err)
	}
	fields, err := orderedObject(payload)
	if err != nil {
		return nil, fmt.Errorf("debezium key: %w", err)
	}
	names := map[string]bool{}
	for _, f := range fields {
		names[f.name] = true
	}
	return names, nil
}

// debeziumTypes maps the columns of the before/after structs of a value
// schema to their logical name or type.
func debeziumTypes(schema json.RawMessage) map[string]string {
	type field struct {
		Type   string  `json:"type"`
		Name   string  `json:"name"`
		Field  string  `json:"field"`
		Fields []field `json:"fields"`
	}
	var s field
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil {
		return nil
	}
	types := map[string]string{}
	for _, img := range s.Fields {
		if img.Field != "before" && img.Field != "after" {
			continue
		}
		for _, col := range img.Fields {
			t := col.Type
			if col.Name != "" {
				t = col.Name
			}
			types[col.Field] = t
		}
	}
	return types
}

type jsonField struct {
	name string
	raw  json.RawMessage
}

// orderedObject reads a JSON object's fields in document order (null: none).
func orderedObject(b json.RawMessage) ([]jsonField, error) {
	if isNull(b) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %.40s", b)
	}
	var out []jsonField
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
		if slices.ContainsFunc(out, func(f jsonField) bool { return f.name == name }) {
			return nil, fmt.Errorf("field %q twice", name)
		}
		out = append(out, jsonField{name, raw})
	}
	return out, nil
}

// debeziumValue maps one JSON value to a family and a value.
func debeziumValue(raw json.RawMessage) (schemas.Family, any, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "", nil, errors.New("empty value")
	case string(raw) == "null":
		return "", nil, nil
	case string(raw) == "true" || string(raw) == "false":
		return schemas.FamilyBool, string(raw) == "true", nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, err
		}
		if s == debeziumUnavailable {
			return "", schemas.Unchanged, nil
		}
		return schemas.FamilyText, s, nil
	case raw[0] == '{' || raw[0] == '[':
		if !json.Valid(raw) {
			return "", nil, errors.New("invalid JSON value")
		}
		return schemas.FamilyJSON, schemas.JSON(raw), nil
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return schemas.FamilyInt, i, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", nil, fmt.Errorf("value %.40s: %w", raw, err)
	}
	return schemas.FamilyNumeric, schemas.Decimal(n.String()), nil
}

// fillImages builds the columns (those of after, then any only before
// has) and both images; a column an image lacks is Absent there.
func fillImages(c *schemas.Change, before, after []jsonField, keys map[string]bool, types map[string]string) error {
	index := map[string]int{}
	for _, f := range slices.Concat(after, before) {
		if _, ok := index[f.name]; !ok {
			index[f.name] = len(c.Columns)
			c.Columns = append(c.Columns, schemas.Column{Name: f.name, Type: types[f.name], Key: keys[f.name], Family: schemas.FamilyText})
		}
	}
	families := make([]schemas.Family, len(c.Columns))
	image := func(fields []jsonField) ([]any, error) {
		if fields == nil {
			return nil, nil
		}
		img := make([]any, len(c.Columns))
		for i := range img {
			img[i] = schemas.Absent
		}
		for _, f := range fields {
			i := index[f.name]
			fam, v, err := debeziumValue(f.raw)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", f.name, err)
			}
			img[i] = v
			if fam == "" {
				continue
			}
			switch prev := families[i]; {
			case prev == "" || prev == fam:
				families[i] = fam
			case prev == schemas.FamilyInt && fam == schemas.FamilyNumeric, prev == schemas.FamilyNumeric && fam == schemas.FamilyInt:
				families[i] = schemas.FamilyNumeric
			default:
				return nil, fmt.Errorf("column %s is %s in one image and %s in the other", f.name, prev, fam)
			}
		}
		return img, nil
	}
	var err error
	if c.Before, err = image(before); err != nil {
		return fmt.Errorf("before: %w", err)
	}
	if c.After, err = image(after); err != nil {
		return fmt.Errorf("after: %w", err)
	}
	for i, fam := range families {
		if fam == "" {
			continue
		}
		c.Columns[i].Family = fam
		if fam == schemas.FamilyNumeric {
			widen(c.Before, i)
			widen(c.After, i)
		}
	}
	return nil
}

// widen turns an integer into the exact decimal its column holds elsewhere.
func widen(img []any, i int) {
	if i < len(img) {
		if v, ok := img[i].(int64); ok {
			img[i] = schemas.Decimal(strconv.FormatInt(v, 10))
		}
	}
}
