package postgres

import "testing"

func TestHeartbeatTime(t *testing.T) {
	cases := []struct {
		name    string
		content string
		ok      bool
	}{
		{"microseconds since the epoch", "1763805854851175", true},
		{"the old format, now()::text", "2026-11-22 10:04:14.851175+00", false},
		{"empty", "", false},
		{"zero", "0", false},
		{"negative", "-5", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, ok := heartbeatTime([]byte(c.content))
			if ok != c.ok {
				t.Fatalf("ok %v, want %v", ok, c.ok)
			}
			if ok && at.UnixMicro() != 1763805854851175 {
				t.Errorf("got %s", at)
			}
		})
	}
}
