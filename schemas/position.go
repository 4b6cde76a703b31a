package schemas

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead-log position.
type LSN uint64

// String formats the LSN the way PostgreSQL does: two hex halves, "16/B374D848".
func (l LSN) String() string {
	var b [17]byte
	return string(l.appendText(b[:0]))
}

// appendText appends what String returns, without fmt: every change
// encodes one.
func (l LSN) appendText(dst []byte) []byte {
	return appendUpperHex(append(appendUpperHex(dst, uint32(l>>32)), '/'), uint32(l))
}

func appendUpperHex(dst []byte, v uint32) []byte {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = "0123456789ABCDEF"[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// ParseLSN reads PostgreSQL's "XXX/XXX" form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse lsn %q: want XXX/XXX", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse lsn %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse lsn %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// Position is where a transaction's commit sits in its source's history.
// Every change of a transaction carries the position of its commit, so
// positions are totally ordered per source and a consumer that has applied
// position X can drop any redelivered change at or before X.
//
// Only the field of the source's kind is set. PostgreSQL uses LSN, the
// commit's end LSN (what the walsender is acknowledged with). MySQL will add
// a GTID set, compared by containment; Covers is the comparison every
// consumer uses, so that is an addition, not a rewrite.
type Position struct {
	// LSN is the commit end LSN of a PostgreSQL transaction.
	LSN LSN
}

// IsZero reports whether the position is unset.
func (p Position) IsZero() bool { return p == Position{} }

// Covers reports whether every transaction at or before q is also at or
// before p, that is p ≥ q: a consumer at p has already applied q.
func (p Position) Covers(q Position) bool {
	return p.LSN >= q.LSN
}

// Compare orders two positions of the same PostgreSQL source: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	switch {
	case p.LSN < q.LSN:
		return -1
	case p.LSN > q.LSN:
		return 1
	}
	return 0
}

// String is the position for logs and errors.
func (p Position) String() string {
	return "lsn " + p.LSN.String()
}
