package analyze

import pg_query "github.com/pganalyze/pg_query_go/v6"

// maxNormalizedBytes bounds the text NormalizedText keeps of a statement.
const maxNormalizedBytes = 2048

// NormalizedText is sql with its constants replaced by $n placeholders
// (pg_query's normalization), shortened to 2 KiB: a statement's template
// as an operator may read it without the values a client sent. It is
// empty when the statement does not parse, so that no raw text leaks.
func NormalizedText(sql string) string {
	n, err := pg_query.Normalize(sql)
	if err != nil {
		return ""
	}
	if len(n) > maxNormalizedBytes {
		cut := maxNormalizedBytes
		for cut > 0 && n[cut]&0xc0 == 0x80 {
			cut-- // not inside a UTF-8 sequence
		}
		n = n[:cut] + "…"
	}
	return n
}
