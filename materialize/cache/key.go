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
	Database string
	Role     string
	// Statement is the exact statement text. Not the fingerprint: the
	// fingerprint ignores constants and column aliases, which change the
	// result.
	Statement string
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
const keyVersion = 2

// AppendKey appends k's unambiguous encoding to dst and returns it: every
// field is length-prefixed, NULL parameters are distinct from empty ones.
// With enough capacity in dst it does not allocate.
func AppendKey(dst []byte, k *Key) []byte {
	dst = append(dst, keyVersion)
	dst = appendString(dst, k.Database)
	dst = appendString(dst, k.Role)
	dst = appendString(dst, k.Statement)
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
	dst = appendCodes(dst, k.ResultFormats)
	if k.Settings != nil {
		for _, s := range k.Settings {
			dst = appendString(dst, s)
		}
	} else {
		for range numSettings {
			dst = appendString(dst, "")
		}
	}
	return dst
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
