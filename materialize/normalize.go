package materialize

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
)

// kind is the canonical form a predicate column's values are normalized
// to, so that a value written in a query (a literal, or a parameter in
// text or binary format of any type) and a value from the change stream
// compare equal exactly when PostgreSQL's equality says so.
type kind uint8

const (
	kindNone kind = iota // not normalizable: table-level dependency
	kindInt
	kindText
	kindBool
	kindUUID
	kindDate
	kindBytes
)

// kindOf maps a catalog type name (analyze.Predicate.Type) to its kind.
func kindOf(typ string) kind {
	switch typ {
	case "int2", "int4", "int8", "oid":
		return kindInt
	case "text", "varchar", "name":
		return kindText
	case "bool":
		return kindBool
	case "uuid":
		return kindUUID
	case "date":
		return kindDate
	case "bytea":
		return kindBytes
	}
	return kindNone
}

// PostgreSQL type OIDs of parameters we can decode.
const (
	oidUnspecified = 0
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidUnknown     = 705
	oidVarchar     = 1043
	oidDate        = 1082
	oidUUID        = 2950
)

// paramKind is the kind a parameter's type OID belongs to; kindNone for an
// unspecified type (the server infers it from the column).
func paramKind(oid uint32) (kind, bool) {
	switch oid {
	case oidUnspecified, oidUnknown:
		return kindNone, true
	case oidInt2, oidInt4, oidInt8, oidOID:
		return kindInt, true
	case oidText, oidVarchar, oidName:
		return kindText, true
	case oidBool:
		return kindBool, true
	case oidUUID:
		return kindUUID, true
	case oidDate:
		return kindDate, true
	case oidBytea:
		return kindBytes, true
	}
	return kindNone, false
}

// castKind is the kind of a cast written on a value, by type name.
func castKind(name string) kind {
	switch strings.ToLower(name) {
	case "int", "integer", "smallint", "bigint", "int2", "int4", "int8", "oid":
		return kindInt
	case "text", "varchar", "character varying", "name":
		return kindText
	case "bool", "boolean":
		return kindBool
	case "uuid":
		return kindUUID
	case "date":
		return kindDate
	case "bytea":
		return kindBytes
	}
	return kindNone
}

// normalizeText parses s as PostgreSQL's input function for k would, in
// the canonical form; ok is false when s is not certainly read that way
// (then the caller depends on the whole table).
func normalizeText(k kind, s string) (string, bool) {
	switch k {
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	case kindText:
		return s, true
	case kindBool:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "t", "tr", "tru", "true", "y", "ye", "yes", "on", "1":
			return "t", true
		case "f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0":
			return "f", true
		}
	case kindUUID:
		u, err := schemas.ParseUUID(strings.TrimSpace(s))
		if err != nil {
			return "", false
		}
		return u.String(), true
	case kindDate:
		// Only ISO dates: other forms depend on DateStyle.
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
		if err != nil {
			return "", false
		}
		return t.Format(time.DateOnly), true
	case kindBytes:
		if h, ok := strings.CutPrefix(s, `\x`); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return "", false
			}
			return hex.EncodeToString(b), true
		}
	}
	return "", false
}

// pgEpoch is day 0 of PostgreSQL's binary date format.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// normalizeBinary decodes a binary-format parameter of type oid for a
// column of kind k.
func normalizeBinary(k kind, oid uint32, b []byte) (string, bool) {
	pk, known := paramKind(oid)
	if known && pk == kindNone {
		// Unspecified: the server typed the parameter from the column
		// it is compared with, so it is in the column's binary format.
		pk = k
	}
	if !known || pk != k {
		return "", false
	}
	switch k {
	case kindInt:
		switch len(b) {
		case 2:
			return strconv.FormatInt(int64(int16(binary.BigEndian.Uint16(b))), 10), true
		case 4:
			if oid == oidOID {
				return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b)), 10), true
			}
			return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(b))), 10), true
		case 8:
			return strconv.FormatInt(int64(binary.BigEndian.Uint64(b)), 10), true
		}
	case kindText:
		return string(b), true
	case kindBool:
		if len(b) == 1 {
			if b[0] != 0 {
				return "t", true
			}
			return "f", true
		}
	case kindUUID:
		if len(b) == 16 {
			return schemas.UUID(b).String(), true
		}
	case kindDate:
		if len(b) == 4 {
			days := int32(binary.BigEndian.Uint32(b))
			if days == int32(^uint32(0)>>1) || days == -days-1 {
				return "", false // infinity
			}
			return pgEpoch.AddDate(0, 0, int(days)).Format(time.DateOnly), true
		}
	case kindBytes:
		return hex.EncodeToString(b), true
	}
	return "", false
}

// normalizeStream puts a value from the change stream in canonical form
// for a predicate column of kind k.
func normalizeStream(k kind, v any) (string, bool) {
	switch k {
	case kindInt:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), true
		}
	case kindText:
		if s, ok := v.(string); ok {
			return s, true
		}
	case kindBool:
		if b, ok := v.(bool); ok {
			if b {
				return "t", true
			}
			return "f", true
		}
	case kindUUID:
		if u, ok := v.(schemas.UUID); ok {
			return u.String(), true
		}
	case kindDate:
		if t, ok := v.(time.Time); ok {
			return t.UTC().Format(time.DateOnly), true
		}
	case kindBytes:
		if b, ok := v.([]byte); ok {
			return hex.EncodeToString(b), true
		}
	}
	return "", false
}

// Params are one execution's bound parameters, as in a Bind message.
type Params struct {
	// Types are the parameter type OIDs (from Parse, 0 = unspecified).
	Types []uint32
	// Formats are the Bind's parameter format codes: none means all text,
	// one applies to all, else one per parameter.
	Formats []int16
	// Values are the values, nil for NULL.
	Values [][]byte
}

func (p *Params) format(i int) int16 {
	switch len(p.Formats) {
	case 0:
		return 0
	case 1:
		return p.Formats[0]
	}
	if i < len(p.Formats) {
		return p.Formats[i]
	}
	return 0
}

func (p *Params) typ(i int) uint32 {
	if i < len(p.Types) {
		return p.Types[i]
	}
	return 0
}

// normalizeValue puts a predicate's value in canonical form for a column
// of kind k; null reports a NULL parameter or literal (which equals
// nothing).
func normalizeValue(k kind, v analyze.Value, p *Params) (s string, null, ok bool) {
	if v.Array {
		return "", false, false
	}
	if v.Param == 0 {
		if v.Kind == "null" {
			return "", true, true
		}
		if v.Cast != "" && castKind(v.Cast) != k {
			return "", false, false
		}
		switch v.Kind {
		case "integer", "string", "bool", "":
		default:
			return "", false, false
		}
		if v.Kind == "bool" {
			s, ok = normalizeText(kindBool, v.Const)
			return s, false, ok && k == kindBool
		}
		s, ok = normalizeText(k, v.Const)
		return s, false, ok
	}
	i := v.Param - 1
	if p == nil || i < 0 || i >= len(p.Values) {
		return "", false, false
	}
	if v.Cast != "" && castKind(v.Cast) != k {
		return "", false, false
	}
	raw := p.Values[i]
	if raw == nil {
		return "", true, true
	}
	oid := p.typ(i)
	if p.format(i) == 1 {
		s, ok = normalizeBinary(k, oid, raw)
		return s, false, ok
	}
	if pk, known := paramKind(oid); !known || (pk != kindNone && pk != k && !(pk == kindText && k != kindBytes)) {
		// A text-typed parameter against a non-text column is read by
		// the column's input function; any other mismatch makes the
		// server convert in ways we do not model.
		return "", false, false
	}
	s, ok = normalizeText(k, string(raw))
	return s, false, ok
}
