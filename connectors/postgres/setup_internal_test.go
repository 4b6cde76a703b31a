package postgres

import "testing"

func TestIncompleteReport(t *testing.T) {
	cases := []struct {
		name, missing, rowFilter, want string
	}{
		{"every change", "", "", ""},
		{"operations left out", "DELETE, TRUNCATE", "", "publication p does not publish DELETE, TRUNCATE: its reads are never cached."},
		{"row filter", "", "(id > 100)", "publication p filters its rows WHERE (id > 100): its reads are never cached."},
		{"both", "TRUNCATE", "(id > 1)", "publication p does not publish TRUNCATE; publication p filters its rows WHERE (id > 1): its reads are never cached."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := incompleteReport("p", c.missing, c.rowFilter); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
