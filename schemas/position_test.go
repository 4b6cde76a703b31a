package schemas_test

import (
	"fmt"
	"testing"

	"github.com/freshetdb/freshet/schemas"
)

func TestLSNRoundTrip(t *testing.T) {
	for _, s := range []string{"0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := schemas.ParseLSN(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if l.String() != s {
			t.Fatalf("ParseLSN(%q).String() = %q", s, l.String())
		}
	}
	for _, s := range []string{"", "16", "x/1", "1/y", "100000000/0"} {
		if _, err := schemas.ParseLSN(s); err == nil {
			t.Fatalf("ParseLSN(%q) accepted", s)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	a, b := schemas.Position{LSN: 10}, schemas.Position{LSN: 20}
	if !b.Covers(a) || a.Covers(b) || !a.Covers(a) {
		t.Fatal("Covers is not ≥ on LSNs")
	}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Fatal("Compare is not a total order on LSNs")
	}
	if !(schemas.Position{}).IsZero() || a.IsZero() {
		t.Fatal("IsZero")
	}
}

// TestLSNStringIsPostgresForm checks String against fmt's %X/%X, the form
// PostgreSQL prints, across bit patterns.
func TestLSNStringIsPostgresForm(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xF, 0x10, 0xABCDEF, 1 << 32, 0x1_0000_000A, 0xDEADBEEF_0BADF00D, ^uint64(0)} {
		want := fmt.Sprintf("%X/%X", uint32(v>>32), uint32(v))
		if got := schemas.LSN(v).String(); got != want {
			t.Errorf("LSN(%#x).String() = %q, want %q", v, got, want)
		}
	}
}
