package postgres

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5/pgtype"
)

// valueDecoder turns pgoutput's text-format column values into the typed
// values schemas defines. It is not safe for concurrent use (pgtype.Map
// caches scan plans).
type valueDecoder struct {
	m *pgtype.Map
	// typeNames holds the names pgoutput's Type messages announced for
	// types outside the built-in catalogue (enums, domains, extensions).
	typeNames map[uint32]string
}

func newValueDecoder() *valueDecoder {
	return &valueDecoder{m: pgtype.NewMap(), typeNames: map[uint32]string{}}
}

// familyOf maps a type OID to its value family; elem is set for arrays and
// ranges. Types pgtype does not know are text.
func (d *valueDecoder) familyOf(oid uint32) (fam, elem schemas.Family) {
	switch oid {
	case pgtype.BoolOID:
		return schemas.FamilyBool, ""
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return schemas.FamilyInt, ""
	case pgtype.Float4OID, pgtype.Float8OID:
		return schemas.FamilyFloat, ""
	case pgtype.NumericOID:
		return schemas.FamilyNumeric, ""
	case pgtype.ByteaOID:
		return schemas.FamilyBytes, ""
	case pgtype.UUIDOID:
		return schemas.FamilyUUID, ""
	case pgtype.JSONOID, pgtype.JSONBOID:
		return schemas.FamilyJSON, ""
	case pgtype.DateOID:
		return schemas.FamilyDate, ""
	case pgtype.TimeOID:
		return schemas.FamilyTime, ""
	case pgtype.TimestampOID:
		return schemas.FamilyTimestamp, ""
	case pgtype.TimestamptzOID:
		return schemas.FamilyTimestampTZ, ""
	case pgtype.IntervalOID:
		return schemas.FamilyInterval, ""
	}
	t, ok := d.m.TypeForOID(oid)
	if !ok {
		return schemas.FamilyText, ""
	}
	switch c := t.Codec.(type) {
	case *pgtype.ArrayCodec:
		if e, _ := d.familyOf(c.ElementType.OID); e != schemas.FamilyArray && e != schemas.FamilyRange {
			return schemas.FamilyArray, e
		}
	case *pgtype.RangeCodec:
		if e, _ := d.familyOf(c.ElementType.OID); e != schemas.FamilyArray && e != schemas.FamilyRange {
			return schemas.FamilyRange, e
		}
	}
	return schemas.FamilyText, ""
}

// column describes one relation column.
func (d *valueDecoder) column(name string, oid uint32, key bool) schemas.Column {
	fam, elem := d.familyOf(oid)
	typ := d.typeNames[oid]
	if t, ok := d.m.TypeForOID(oid); ok {
		typ = t.Name
	}
	return schemas.Column{Name: name, Type: typ, OID: oid, Family: fam, Elem: elem, Key: key}
}

// decode reads one text-format value of col. The common scalar types are
// parsed directly; the rest go through pgtype and are normalised.
func (d *valueDecoder) decode(col *schemas.Column, src []byte) (any, error) {
	switch col.Family {
	case schemas.FamilyText:
		return string(src), nil
	case schemas.FamilyInt:
		return strconv.ParseInt(string(src), 10, 64)
	case schemas.FamilyFloat:
		return strconv.ParseFloat(string(src), 64)
	case schemas.FamilyBool:
		return decodeBool(src)
	case schemas.FamilyNumeric:
		return schemas.Decimal(src), nil
	case schemas.FamilyJSON:
		return schemas.JSON(src), nil
	case schemas.FamilyUUID:
		return schemas.ParseUUID(string(src))
	case schemas.FamilyDate, schemas.FamilyTimestamp, schemas.FamilyTimestampTZ:
		if t, ok := parseTimeText(src, col.Family != schemas.FamilyDate, col.Family == schemas.FamilyTimestampTZ); ok {
			return t, nil
		}
	case schemas.FamilyBytes:
		if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
			b := make([]byte, hex.DecodedLen(len(src)-2))
			_, err := hex.Decode(b, src[2:])
			return b, err
		}
	}
	t, ok := d.m.TypeForOID(col.OID)
	if !ok {
		return string(src), nil
	}
	v, err := t.Codec.DecodeValue(d.m, col.OID, pgtype.TextFormatCode, src)
	if err != nil {
		return nil, err
	}
	return normalize(col.Family, col.Elem, v)
}

func decodeBool(src []byte) (bool, error) {
	switch string(src) {
	case "t":
		return true, nil
	case "f":
		return false, nil
	}
	return false, fmt.Errorf("bool %q", src)
}

// normalize converts what pgtype decoded into the family's Go type.
func normalize(fam, elem schemas.Family, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = normalize(elem, elem, e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case pgtype.Range[any]:
		return normalizeRange(elem, x)
	}
	return normalizeScalar(fam, v)
}

func normalizeScalar(fam schemas.Family, v any) (any, error) {
	switch x := v.(type) {
	case bool, int64, float64, string, []byte:
		return x, nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case [16]byte:
		return schemas.UUID(x), nil
	case time.Time:
		return x.UTC(), nil
	case pgtype.InfinityModifier:
		if x < 0 {
			return schemas.NegInfinity, nil
		}
		return schemas.PosInfinity, nil
	case pgtype.Time:
		return schemas.TimeOfDay(x.Microseconds), nil
	case pgtype.Interval:
		return schemas.Interval{Months: x.Months, Days: x.Days, Micros: x.Microseconds}, nil
	case pgtype.Numeric:
		s, err := x.Value()
		if err != nil {
			return nil, err
		}
		return schemas.Decimal(s.(string)), nil
	case netip.Prefix:
		return x.String(), nil
	}
	if fam == schemas.FamilyText {
		return fmt.Sprint(v), nil
	}
	return nil, fmt.Errorf("no conversion from %T to family %q", v, fam)
}

func normalizeRange(elem schemas.Family, r pgtype.Range[any]) (any, error) {
	if r.LowerType == pgtype.Empty {
		return schemas.Range{Empty: true}, nil
	}
	out := schemas.Range{
		HasLower: r.LowerType != pgtype.Unbounded, HasUpper: r.UpperType != pgtype.Unbounded,
		LowerInclusive: r.LowerType == pgtype.Inclusive, UpperInclusive: r.UpperType == pgtype.Inclusive,
	}
	var err error
	if out.HasLower {
		if out.Lower, err = normalizeScalar(elem, r.Lower); err != nil {
			return nil, err
		}
	}
	if out.HasUpper {
		if out.Upper, err = normalizeScalar(elem, r.Upper); err != nil {
			return nil, err
		}
	}
	return out, nil
}
