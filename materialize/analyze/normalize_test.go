package analyze

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizedText(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"constants become placeholders", "SELECT v FROM t WHERE id = 42 AND name = 'secret'", "SELECT v FROM t WHERE id = $1 AND name = $2"},
		{"parameters stay", "SELECT v FROM t WHERE id = $1", "SELECT v FROM t WHERE id = $1"},
		{"unparseable gives nothing", "SELEC 'secret' FROM", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizedText(tt.sql); got != tt.want {
				t.Fatalf("NormalizedText(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
	for _, odd := range []int{0, 1} {
		long := `SELECT 1 AS "` + strings.Repeat("x", odd) + strings.Repeat("é", 3000) + `"`
		got := NormalizedText(long)
		if len(got) > maxNormalizedBytes+len("…") || !utf8.ValidString(got) || !strings.HasPrefix(got, "SELECT $1 AS") {
			t.Fatalf("long statement: %d bytes, valid UTF-8 %v, %q...", len(got), utf8.ValidString(got), got[:20])
		}
	}
}
