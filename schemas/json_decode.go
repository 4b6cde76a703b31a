package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

type wireChange struct {
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Source struct {
		Name   string `json:"name"`
		TsUs   int64  `json:"ts_us"`
		Schema string `json:"schema"`
		Table  string `json:"table"`
		TxID   uint32 `json:"txId"`
	} `json:"source"`
	Op        Op           `json:"op"`
	Position  Position     `json:"position"`
	Seq       uint32       `json:"seq"`
	Columns   []wireColumn `json:"columns"`
	Unchanged struct {
		Before []string `json:"before"`
		After  []string `json:"after"`
	} `json:"unchanged"`
}

type wireColumn struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	OID    uint32 `json:"oid"`
	Family Family `json:"family"`
	Elem   Family `json:"elem"`
	Key    bool   `json:"key"`
}

// UnmarshalChange decodes what MarshalChange encoded. Values come back as
// their family's Go types; times in UTC.
func UnmarshalChange(b []byte) (*Change, error) {
	var w wireChange
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode change: %w", err)
	}
	if !w.Op.Valid() {
		return nil, fmt.Errorf("decode change: unknown op %q", w.Op)
	}
	c := &Change{
		Source: w.Source.Name, Schema: w.Source.Schema, Table: w.Source.Table, Op: w.Op,
		Position: w.Position, Seq: w.Seq, TxID: w.Source.TxID,
	}
	if w.Source.TsUs != 0 {
		c.CommitTime = time.UnixMicro(w.Source.TsUs).UTC()
	}
	for _, wc := range w.Columns {
		c.Columns = append(c.Columns, Column(wc))
	}
	var err error
	if c.Before, err = decodeImage(c.Columns, w.Before, w.Unchanged.Before); err != nil {
		return nil, fmt.Errorf("decode change %s.%s at %s before: %w", c.Schema, c.Table, c.Position, err)
	}
	if c.After, err = decodeImage(c.Columns, w.After, w.Unchanged.After); err != nil {
		return nil, fmt.Errorf("decode change %s.%s at %s after: %w", c.Schema, c.Table, c.Position, err)
	}
	return c, nil
}

func decodeImage(cols []Column, raw json.RawMessage, unchanged []string) ([]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		if len(unchanged) > 0 {
			return nil, fmt.Errorf("unchanged columns %q without an image", unchanged)
		}
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	image := make([]any, len(cols))
	seen := 0
	for i, col := range cols {
		v, ok := fields[col.Name]
		if !ok {
			image[i] = Absent
			continue
		}
		seen++
		var err error
		if image[i], err = decodeValue(col.Family, col.Elem, v); err != nil {
			return nil, fmt.Errorf("column %q: %w", col.Name, err)
		}
	}
	if seen != len(fields) {
		return nil, fmt.Errorf("image has %d fields, only %d of them are columns", len(fields), seen)
	}
	for _, name := range unchanged {
		i := columnIndex(cols, name)
		if i < 0 || !IsAbsent(image[i]) {
			return nil, fmt.Errorf("unchanged column %q is unknown or has a value", name)
		}
		image[i] = Unchanged
	}
	return image, nil
}

func columnIndex(cols []Column, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func decodeValue(fam, elem Family, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	switch fam {
	case FamilyBool:
		var b bool
		return b, json.Unmarshal(raw, &b)
	case FamilyInt:
		return strconv.ParseInt(string(raw), 10, 64)
	case FamilyFloat:
		return decodeFloat(raw)
	case FamilyArray:
		return decodeArray(elem, raw)
	case FamilyRange:
		return decodeRange(elem, raw)
	case FamilyInterval:
		var iv Interval
		if err := json.Unmarshal(raw, &iv); err != nil {
			return nil, err
		}
		return iv, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("family %q wants a string: %w", fam, err)
	}
	return decodeString(fam, s)
}

func decodeString(fam Family, s string) (any, error) {
	switch fam {
	case FamilyNumeric:
		return Decimal(s), nil
	case FamilyText:
		return s, nil
	case FamilyJSON:
		return JSON(s), nil
	case FamilyBytes:
		return base64.StdEncoding.DecodeString(s)
	case FamilyUUID:
		return ParseUUID(s)
	case FamilyTime:
		return parseTimeOfDay(s)
	case FamilyDate, FamilyTimestamp, FamilyTimestampTZ:
		return parseTime(fam, s)
	}
	return nil, fmt.Errorf("unknown family %q", fam)
}

func decodeFloat(raw json.RawMessage) (any, error) {
	switch string(raw) {
	case `"NaN"`:
		return math.NaN(), nil
	case `"Infinity"`:
		return math.Inf(1), nil
	case `"-Infinity"`:
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(string(raw), 64)
}

func parseTime(fam Family, s string) (any, error) {
	switch s {
	case "infinity":
		return PosInfinity, nil
	case "-infinity":
		return NegInfinity, nil
	}
	layout := map[Family]string{FamilyDate: dateLayout, FamilyTimestamp: timestampLayout, FamilyTimestampTZ: timestampTZLayout}[fam]
	t, err := time.Parse(layout, s)
	if err != nil {
		return nil, err
	}
	return t.UTC(), nil
}

func parseTimeOfDay(s string) (TimeOfDay, error) {
	hms, frac, _ := strings.Cut(s, ".")
	parts := strings.Split(hms, ":")
	if len(parts) != 3 || len(frac) > 6 {
		return 0, fmt.Errorf("time of day %q: want HH:MM:SS[.ffffff]", s)
	}
	var total int64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || len(p) != 2 || (i > 0 && n > 59) || (i == 0 && n > 24) {
			return 0, fmt.Errorf("time of day %q: bad field %q", s, p)
		}
		total = total*60 + int64(n)
	}
	us := total * 1_000_000
	if frac != "" {
		n, err := strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("time of day %q: %w", s, err)
		}
		us += int64(n)
	}
	return TimeOfDay(us), nil
}

func decodeArray(elem Family, raw json.RawMessage) (any, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]any, len(items))
	for i, item := range items {
		var err error
		if len(item) > 0 && item[0] == '[' {
			out[i], err = decodeArray(elem, item)
		} else {
			out[i], err = decodeValue(elem, elem, item)
		}
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return out, nil
}

func decodeRange(elem Family, raw json.RawMessage) (any, error) {
	var w struct {
		Empty    bool            `json:"empty"`
		Lower    json.RawMessage `json:"lower"`
		Upper    json.RawMessage `json:"upper"`
		LowerInc bool            `json:"lower_inc"`
		UpperInc bool            `json:"upper_inc"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	if w.Empty {
		return Range{Empty: true}, nil
	}
	r := Range{LowerInclusive: w.LowerInc, UpperInclusive: w.UpperInc}
	var err error
	if w.Lower != nil {
		r.HasLower = true
		if r.Lower, err = decodeValue(elem, elem, w.Lower); err != nil {
			return nil, fmt.Errorf("lower bound: %w", err)
		}
	}
	if w.Upper != nil {
		r.HasUpper = true
		if r.Upper, err = decodeValue(elem, elem, w.Upper); err != nil {
			return nil, fmt.Errorf("upper bound: %w", err)
		}
	}
	return r, nil
}
