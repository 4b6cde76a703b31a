package postgres

import (
	"encoding/binary"
	"fmt"
)

// checkLengths walks the variable-length parts of row and truncate messages
// before pglogrepl decodes them: pglogrepl allocates whatever length or
// count a message claims, so a corrupt one could ask for gigabytes.
func checkLengths(data []byte, withXid bool) error {
	kind := data[0]
	if !containsByte("IUDT", kind) {
		return nil
	}
	b := data[1:]
	if withXid {
		if len(b) < 4 {
			return fmt.Errorf("%w: %q message too short for its xid", ErrProtocol, kind)
		}
		b = b[4:]
	}
	var err error
	switch kind {
	case 'I':
		b, err = skipTuples(b, "N")
	case 'U':
		b, err = skipTuples(b, "KON")
	case 'D':
		b, err = skipTuples(b, "KO")
	case 'T':
		if len(b) < 5 || uint64(binary.BigEndian.Uint32(b))*4 != uint64(len(b)-5) {
			return fmt.Errorf("%w: truncate message lists more relations than it holds", ErrProtocol)
		}
		return nil
	default:
		return nil
	}
	if err == nil && len(b) != 0 {
		err = fmt.Errorf("%w: %q message has %d trailing bytes", ErrProtocol, kind, len(b))
	}
	return err
}

// skipTuples skips a relation id and then tuples, each introduced by one of
// the marker bytes allowed, in order ('N' must come last).
func skipTuples(b []byte, markers string) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: row message too short", ErrProtocol)
	}
	b = b[4:]
	for len(b) > 0 {
		marker := b[0]
		if !containsByte(markers, marker) {
			return nil, fmt.Errorf("%w: unexpected tuple marker %q", ErrProtocol, marker)
		}
		var err error
		if b, err = skipTuple(b[1:]); err != nil {
			return nil, err
		}
		if marker == 'N' || len(markers) == 2 && markers == "KO" {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: row message without a tuple", ErrProtocol)
}

func skipTuple(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: tuple too short", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for range n {
		if len(b) < 1 {
			return nil, fmt.Errorf("%w: tuple ends early", ErrProtocol)
		}
		kind := b[0]
		b = b[1:]
		switch kind {
		case 'n', 'u':
		case 't', 'b':
			if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
				return nil, fmt.Errorf("%w: tuple value longer than the message", ErrProtocol)
			}
			b = b[4+binary.BigEndian.Uint32(b):]
		default:
			return nil, fmt.Errorf("%w: tuple value kind %q", ErrProtocol, kind)
		}
	}
	return b, nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
