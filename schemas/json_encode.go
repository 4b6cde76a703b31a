package schemas

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// connectorName is source.connector in the Debezium envelope.
const connectorName = "postgresql"

// Layouts of the text forms of dates and times in JSON.
const (
	dateLayout        = "2006-01-02"
	timestampLayout   = "2006-01-02T15:04:05.999999"
	timestampTZLayout = "2006-01-02T15:04:05.999999Z07:00"
)

// MarshalJSON encodes a position as {"lsn":"16/B374D848"}.
func (p Position) MarshalJSON() ([]byte, error) {
	return []byte(`{"lsn":"` + p.LSN.String() + `"}`), nil
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *Position) UnmarshalJSON(b []byte) error {
	var w struct {
		LSN string `json:"lsn"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("position: %w", err)
	}
	if w.LSN == "" {
		*p = Position{}
		return nil
	}
	lsn, err := ParseLSN(w.LSN)
	if err != nil {
		return fmt.Errorf("position: %w", err)
	}
	*p = Position{LSN: lsn}
	return nil
}

// MarshalChange encodes c as a Debezium-style envelope (before, after,
// source, op, ts_ms) plus freshet's own fields: position, seq, columns and
// unchanged. ts_ms is the commit time, not the time of encoding, so that an
// encoding is a function of the change alone.
//
// Values are encoded by their column's family: numeric as a string (never
// a float), bytes as base64, uuid, date and time types as strings, json as
// a string holding the document, intervals and ranges as objects. Columns
// that are Unchanged or Absent are left out of the image; Unchanged ones
// are listed under "unchanged".
func MarshalChange(c *Change) ([]byte, error) {
	return AppendChange(make([]byte, 0, 512), c)
}

// AppendChange is MarshalChange appending to dst.
func AppendChange(dst []byte, c *Change) ([]byte, error) {
	if !c.Op.Valid() {
		return nil, fmt.Errorf("encode change: unknown op %q", c.Op)
	}
	var err error
	dst = append(dst, `{"before":`...)
	if dst, err = appendImage(dst, c.Columns, c.Before); err != nil {
		return nil, fmt.Errorf("encode change %s.%s before: %w", c.Schema, c.Table, err)
	}
	dst = append(dst, `,"after":`...)
	if dst, err = appendImage(dst, c.Columns, c.After); err != nil {
		return nil, fmt.Errorf("encode change %s.%s after: %w", c.Schema, c.Table, err)
	}
	dst = appendSource(append(dst, `,"source":`...), c)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, c.Op...)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, unixMilli(c.CommitTime), 10)
	dst = append(dst, `,"position":{"lsn":"`...)
	dst = c.Position.LSN.appendText(dst)
	dst = append(dst, `"},"seq":`...)
	dst = strconv.AppendUint(dst, uint64(c.Seq), 10)
	dst = appendColumns(append(dst, `,"columns":`...), c.Columns)
	dst = appendUnchanged(dst, c)
	return append(dst, '}'), nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func appendSource(dst []byte, c *Change) []byte {
	dst = append(dst, `{"connector":"`+connectorName+`","name":`...)
	dst = appendString(dst, c.Source)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, unixMilli(c.CommitTime), 10)
	dst = append(dst, `,"ts_us":`...)
	dst = strconv.AppendInt(dst, unixMicro(c.CommitTime), 10)
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, c.Schema)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, c.Table)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(c.TxID), 10)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, uint64(c.Position.LSN), 10)
	return append(dst, '}')
}

func appendColumns(dst []byte, cols []Column) []byte {
	dst = append(dst, '[')
	for i, col := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, col.Name)
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, col.Type)
		dst = append(dst, `,"oid":`...)
		dst = strconv.AppendUint(dst, uint64(col.OID), 10)
		dst = append(dst, `,"family":`...)
		dst = appendString(dst, string(col.Family))
		if col.Elem != "" {
			dst = append(dst, `,"elem":`...)
			dst = appendString(dst, string(col.Elem))
		}
		if col.Key {
			dst = append(dst, `,"key":true`...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendUnchanged(dst []byte, c *Change) []byte {
	before, after := unchangedNames(c.Columns, c.Before), unchangedNames(c.Columns, c.After)
	if len(before) == 0 && len(after) == 0 {
		return dst
	}
	dst = append(dst, `,"unchanged":{`...)
	if len(before) > 0 {
		dst = appendStrings(append(dst, `"before":`...), before)
		if len(after) > 0 {
			dst = append(dst, ',')
		}
	}
	if len(after) > 0 {
		dst = appendStrings(append(dst, `"after":`...), after)
	}
	return append(dst, '}')
}

func unchangedNames(cols []Column, image []any) []string {
	var names []string
	for i, v := range image {
		if IsUnchanged(v) && i < len(cols) {
			names = append(names, cols[i].Name)
		}
	}
	return names
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

func appendImage(dst []byte, cols []Column, image []any) ([]byte, error) {
	if image == nil {
		return append(dst, "null"...), nil
	}
	if len(image) != len(cols) {
		return nil, fmt.Errorf("image has %d values for %d columns", len(image), len(cols))
	}
	dst = append(dst, '{')
	first := true
	for i, v := range image {
		if IsUnchanged(v) || IsAbsent(v) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(appendString(dst, cols[i].Name), ':')
		var err error
		if dst, err = appendValue(dst, cols[i].Family, cols[i].Elem, v); err != nil {
			return nil, fmt.Errorf("column %q: %w", cols[i].Name, err)
		}
	}
	return append(dst, '}'), nil
}

// appendValue encodes v of family fam (elem for arrays and ranges).
func appendValue(dst []byte, fam, elem Family, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case float64:
		return appendFloat(dst, x), nil
	case Decimal:
		return appendString(dst, string(x)), nil
	case string:
		return appendString(dst, x), nil
	case JSON:
		return appendString(dst, string(x)), nil
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), nil
	case UUID:
		return appendString(dst, x.String()), nil
	case TimeOfDay:
		return appendString(dst, x.String()), nil
	case Infinity:
		return appendString(dst, x.String()), nil
	case time.Time:
		return appendTime(dst, fam, x)
	case Interval:
		dst = append(dst, `{"months":`...)
		dst = strconv.AppendInt(dst, int64(x.Months), 10)
		dst = append(dst, `,"days":`...)
		dst = strconv.AppendInt(dst, int64(x.Days), 10)
		dst = append(dst, `,"micros":`...)
		dst = strconv.AppendInt(dst, x.Micros, 10)
		return append(dst, '}'), nil
	case []any:
		return appendArray(dst, elem, x)
	case Range:
		return appendRange(dst, elem, x)
	}
	return nil, fmt.Errorf("no encoding for %T in family %q", v, fam)
}

func appendTime(dst []byte, fam Family, t time.Time) ([]byte, error) {
	var layout string
	switch fam {
	case FamilyDate:
		layout = dateLayout
	case FamilyTimestamp:
		layout = timestampLayout
	case FamilyTimestampTZ:
		layout = timestampTZLayout
	default:
		return nil, fmt.Errorf("time value in family %q", fam)
	}
	// The layouts produce nothing JSON would escape.
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, layout)
	return append(dst, '"'), nil
}

func appendArray(dst []byte, elem Family, xs []any) ([]byte, error) {
	dst = append(dst, '[')
	for i, x := range xs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendValue(dst, elem, elem, x); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func appendRange(dst []byte, elem Family, r Range) ([]byte, error) {
	if r.Empty {
		return append(dst, `{"empty":true}`...), nil
	}
	dst = append(dst, '{')
	var err error
	if r.HasLower {
		if dst, err = appendValue(append(dst, `"lower":`...), elem, elem, r.Lower); err != nil {
			return nil, err
		}
		dst = append(dst, ',')
	}
	if r.HasUpper {
		if dst, err = appendValue(append(dst, `"upper":`...), elem, elem, r.Upper); err != nil {
			return nil, err
		}
		dst = append(dst, ',')
	}
	dst = append(dst, `"lower_inc":`...)
	dst = strconv.AppendBool(dst, r.LowerInclusive)
	dst = append(dst, `,"upper_inc":`...)
	dst = strconv.AppendBool(dst, r.UpperInclusive)
	return append(dst, '}'), nil
}

func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
