package schemas

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Family groups source types by how their values are represented: the Go
// type a decoded value has and its JSON form. The names are part of the
// encoding; never renumber or rename them.
type Family string

// The families. Text is the fallback for every type without its own:
// enums, domains over unknown types, extension types, network addresses and
// whatever else a source sends as text.
const (
	FamilyBool        Family = "bool"        // bool
	FamilyInt         Family = "int"         // int64
	FamilyFloat       Family = "float"       // float64
	FamilyNumeric     Family = "numeric"     // Decimal
	FamilyText        Family = "text"        // string
	FamilyBytes       Family = "bytes"       // []byte
	FamilyUUID        Family = "uuid"        // UUID
	FamilyJSON        Family = "json"        // JSON
	FamilyDate        Family = "date"        // time.Time at UTC midnight, or Infinity
	FamilyTime        Family = "time"        // TimeOfDay
	FamilyTimestamp   Family = "timestamp"   // time.Time in UTC, wall clock without zone, or Infinity
	FamilyTimestampTZ Family = "timestamptz" // time.Time in UTC, or Infinity
	FamilyInterval    Family = "interval"    // Interval
	FamilyArray       Family = "array"       // []any of the element family (nested for more dimensions)
	FamilyRange       Family = "range"       // Range of the element family
)

// Decimal is an exact number in its decimal text form ("12.340", "NaN",
// "Infinity"): never rounded through a float.
type Decimal string

// JSON is a JSON document as the source printed it.
type JSON string

// UUID is a 16-byte UUID.
type UUID [16]byte

// String formats the UUID in its canonical 8-4-4-4-12 form.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// ParseUUID reads the canonical form, with or without hyphens or braces.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	var digits [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '{' || c == '}' {
			continue
		}
		if n == 32 {
			return u, fmt.Errorf("parse uuid %q: too long", s)
		}
		digits[n] = c
		n++
	}
	if n != 32 {
		return u, fmt.Errorf("parse uuid %q: want 32 hex digits, got %d", s, n)
	}
	if _, err := hex.Decode(u[:], digits[:]); err != nil {
		return u, fmt.Errorf("parse uuid %q: %w", s, err)
	}
	return u, nil
}

// TimeOfDay is a time without date, in microseconds since midnight.
type TimeOfDay int64

// String formats as HH:MM:SS[.ffffff].
func (t TimeOfDay) String() string {
	d := time.Duration(t) * time.Microsecond
	h := int64(d / time.Hour)
	m := int64(d/time.Minute) % 60
	s := int64(d/time.Second) % 60
	us := int64(t) % 1_000_000
	if us == 0 {
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d.%06d", h, m, s, us)
}

// Interval is a PostgreSQL interval: months, days and microseconds are
// separate because their lengths vary.
type Interval struct {
	Months int32 `json:"months"`
	Days   int32 `json:"days"`
	Micros int64 `json:"micros"`
}

// Infinity is a date or timestamp at plus or minus infinity.
type Infinity int8

// The two infinities.
const (
	NegInfinity Infinity = -1
	PosInfinity Infinity = 1
)

// String is PostgreSQL's spelling.
func (i Infinity) String() string {
	if i < 0 {
		return "-infinity"
	}
	return "infinity"
}

// Range is a range value. A missing bound is unbounded (infinite).
type Range struct {
	Empty          bool
	Lower, Upper   any
	HasLower       bool
	HasUpper       bool
	LowerInclusive bool
	UpperInclusive bool
}

// unchanged marks a column the source did not send because it did not
// change (PostgreSQL TOAST). It is never a value: a consumer must keep what
// it had or treat the column as unknown.
type unchanged struct{}

// absent marks a column missing from a partial image, such as a before
// image that holds only the replica identity key.
type absent struct{}

// Unchanged is the marker value for a column whose value the source did not
// send because it did not change.
var Unchanged any = unchanged{}

// Absent is the marker value for a column that the image does not carry.
var Absent any = absent{}

// IsUnchanged reports whether v is the Unchanged marker.
func IsUnchanged(v any) bool { _, ok := v.(unchanged); return ok }

// IsAbsent reports whether v is the Absent marker.
func IsAbsent(v any) bool { _, ok := v.(absent); return ok }
