package postgres

import (
	"reflect"
	"testing"

	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestTimeTextMatchesPgtype decodes date and time texts with the direct
// parser and through pgtype: the values must be identical, and what the
// parser declines must still decode as before.
func TestTimeTextMatchesPgtype(t *testing.T) {
	d := newValueDecoder()
	cases := []struct {
		oid  uint32
		text string
	}{
		{pgtype.DateOID, "2024-02-29"},
		{pgtype.DateOID, "0001-01-01"},
		{pgtype.DateOID, "infinity"},
		{pgtype.DateOID, "2000-01-01 BC"},
		{pgtype.DateOID, "12345-06-07"},
		{pgtype.TimestampOID, "2024-01-02 03:04:05"},
		{pgtype.TimestampOID, "2024-01-02 03:04:05.1"},
		{pgtype.TimestampOID, "2024-01-02 03:04:05.123456"},
		{pgtype.TimestampOID, "1999-12-31 23:59:59.000001"},
		{pgtype.TimestampOID, "-infinity"},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05+00"},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05.5-07"},
		{pgtype.TimestamptzOID, "2024-01-02 00:04:05.654321+05:30"},
		{pgtype.TimestamptzOID, "1900-01-01 00:00:00+00:19:32"},
		{pgtype.TimestamptzOID, "2024-12-31 23:59:59.999999-12"},
		{pgtype.TimestamptzOID, "infinity"},
		{pgtype.TimestamptzOID, "0044-03-15 12:00:00+00 BC"},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			col := d.column("c", tc.oid, false)
			got, err := d.decode(&col, []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			typ, _ := d.m.TypeForOID(tc.oid)
			v, err := typ.Codec.DecodeValue(d.m, tc.oid, pgtype.TextFormatCode, []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			want, err := normalize(col.Family, col.Elem, v)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %#v, pgtype %#v", got, want)
			}
		})
	}
	for _, bad := range []string{"2024-02-30", "2024-13-01", "2024-01-02 25:00:00+00", "2024-01-02 03:04:05+0x", "2024-01-02 03:04:05.+00", "2024-01-02T03:04:05+00"} {
		if _, ok := parseTimeText([]byte(bad), true, true); ok {
			t.Errorf("parseTimeText(%q) accepted", bad)
		}
	}
	col := d.column("c", pgtype.DateOID, false)
	if col.Family != schemas.FamilyDate {
		t.Fatalf("date column family %q", col.Family)
	}
}
