package postgres

import (
	"reflect"
	"testing"

	"github.com/jackc/pglogrepl"
)

// TestRowParserMatchesPglogrepl decodes row messages with the reusing
// parser and with pglogrepl: the assembler must see the same message.
func TestRowParserMatchesPglogrepl(t *testing.T) {
	row := func(kind byte, xid uint32, inStream bool, rest ...[]byte) []byte {
		b := []byte{kind}
		if inStream {
			b = u32(b, xid)
		}
		b = u32(b, 16385)
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	cases := []struct {
		name     string
		data     []byte
		inStream bool
	}{
		{"insert", row('I', 0, false, []byte{'N'}, tuple(nil, "1", "NULL", "héllo")), false},
		{"insert in a stream", row('I', 77, true, []byte{'N'}, tuple(nil, "1", "", "x")), true},
		{"update without old tuple", row('U', 0, false, []byte{'N'}, tuple(nil, "1", "TOAST", "b")), false},
		{"update with old key", row('U', 0, false, []byte{'K'}, tuple(nil, "1", "NULL", "NULL"), []byte{'N'}, tuple(nil, "2", "x", "y")), false},
		{"update with old row in a stream", row('U', 9, true, []byte{'O'}, tuple(nil, "1", "a", "b"), []byte{'N'}, tuple(nil, "1", "c", "TOAST")), true},
		{"delete by key", row('D', 0, false, []byte{'K'}, tuple(nil, "5", "NULL")), false},
		{"delete of full row in a stream", row('D', 3, true, []byte{'O'}, tuple(nil, "5", "z")), true},
	}
	for _, tc := range cases {
		for _, proto := range []int{1, 2} {
			if proto == 1 && tc.inStream {
				continue
			}
			t.Run(tc.name+" proto "+string(rune('0'+proto)), func(t *testing.T) {
				if err := checkLengths(tc.data, proto >= 2 && tc.inStream); err != nil {
					t.Fatal(err)
				}
				var want pglogrepl.Message
				var err error
				if proto >= 2 {
					want, err = pglogrepl.ParseV2(tc.data, tc.inStream)
				} else {
					want, err = pglogrepl.Parse(tc.data)
				}
				if err != nil {
					t.Fatal(err)
				}
				var p rowParser
				for range 2 { // the second parse reuses the first one's memory
					got, ok, err := p.parse(tc.data, proto, tc.inStream)
					if !ok || err != nil {
						t.Fatalf("parse: ok %v, err %v", ok, err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("got %#v\nwant %#v", got, want)
					}
				}
			})
		}
	}
	var p rowParser
	if _, ok, _ := p.parse(msgBegin(1, 2), 2, false); ok {
		t.Error("Begin parsed as a row message")
	}
}
