package cache

import "encoding/binary"

// Setting is an output-affecting session setting that is part of the key.
type Setting int

// The PostgreSQL settings that change a result's bytes for the same
// statement and parameters. Do not reorder: the order is the encoding.
const (
	SearchPath Setting = iota
	TimeZone
	DateStyle
	IntervalStyle
	ExtraFloatDigits
	ByteaOutput
	ClientEncoding
	StandardConformingStrings
	LCMonetary
	numSettings
)

// SettingNames are the GUC names of the settings, by Setting.
var SettingNames = [numSettings]string{
	"search_path", "TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits",
	"bytea_output", "client_encoding", "standard_conforming_strings", "lc_monetary",
}

// Settings holds each Setting's value as the server reports it.
type Settings [numSettings]string

// Key is everything that determines a cached response's bytes. Slices are
// read, never kept: AppendKey copies them into the key's bytes.
type Key struct {
	// ContextID, when not zero, stands for Database and Settings, which
	// are then not encoded: an ID the caller gives those exact values and
	// never gives other values for the life of the store.
	ContextID uint64
	Database  string
	Role      string
	// Statement is the exact statement text. Not the fingerprint: the
	// fingerprint ignores constants and column aliases, which change the
	// result.
	Statement string
	// StatementID, when not zero, stands for Role and Statement (and the
	// search_path analysis used), which are then not encoded: the
	// analysis memo's analyze.Result.StatementID, never given to another
	// text for the life of the process. The key is then a few bytes
	// instead of the whole text; the same text under a new ID (after the
	// memo is emptied) only misses its old entries, which age out.
	StatementID uint64
	// Shape names the protocol message sequence when it changes the
	// response for the same statement ("" for a simple Query).
	Shape string
	// ParamTypes are the parameter type OIDs as bound; ParamFormats the
	// Bind message's parameter format codes; Params the values, nil for
	// NULL.
	ParamTypes   []uint32
	ParamFormats []int16
	Params       [][]byte
	// ResultFormats are the Bind message's result format codes.
	ResultFormats []int16
	Settings      *Settings
}

// keyVersion starts every encoded key; bump it when the layout changes.
const keyVersion = 3

// AppendKey appends k's unambiguous encoding to dst and returns it: every
// field is length-prefixed, NULL parameters are distinct from empty ones.
// With enough capacity in dst it does not allocate.
func AppendKey(dst []byte, k *Key) []byte {
	dst = append(dst, keyVersion)
	if k.ContextID != 0 {
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, k.ContextID)
	} else {
		dst = append(dst, 0)
		dst = appendString(dst, k.Database)
		dst = appendSettings(dst, k.Settings)
	}
	if k.StatementID != 0 {
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, k.StatementID)
	} else {
		dst = append(dst, 0)
		dst = appendString(dst, k.Role)
		dst = appendString(dst, k.Statement)
	}
	dst = appendString(dst, k.Shape)
	dst = binary.AppendUvarint(dst, uint64(len(k.ParamTypes)))
	for _, t := range k.ParamTypes {
		dst = binary.BigEndian.AppendUint32(dst, t)
	}
	dst = appendCodes(dst, k.ParamFormats)
	dst = binary.AppendUvarint(dst, uint64(len(k.Params)))
	for _, p := range k.Params {
		if p == nil {
			dst = append(dst, 0)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(p))+1)
		dst = append(dst, p...)
	}
	return appendCodes(dst, k.ResultFormats)
}

// appendSettings encodes the settings up to the last non-empty one,
// preceded by their number: nil settings are all empty.
func appendSettings(dst []byte, s *Settings) []byte {
	n := 0
	if s != nil {
		for i, v := range s {
			if v != "" {
				n = i + 1
			}
		}
	}
	dst = append(dst, byte(n))
	for i := range n {
		dst = appendString(dst, s[i])
	}
	return dst
}

// KeyStatementID returns the StatementID encoded in key, or 0 when the
// key carries the statement's text (or is not an encoded key).
func KeyStatementID(key []byte) uint64 {
	d := keyDecoder{b: key}
	if d.byte() != keyVersion {
		return 0
	}
	if d.byte() == 1 {
		d.uvarint()
	} else {
		d.string()
		for range d.byte() {
			d.string()
		}
	}
	if d.byte() != 1 {
		return 0
	}
	id := d.uvarint()
	if d.bad {
		return 0
	}
	return id
}

// keyDecoder reads an encoded key's fields; past a malformed field it
// reads zeros and sets bad.
type keyDecoder struct {
	b   []byte
	bad bool
}

func (d *keyDecoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *keyDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *keyDecoder) string() {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return
	}
	d.b = d.b[n:]
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendCodes(dst []byte, codes []int16) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(codes)))
	for _, c := range codes {
		dst = binary.BigEndian.AppendUint16(dst, uint16(c))
	}
	return dst
}
