package postgres

import (
	"strings"
	"testing"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

func TestRefreshSettingsSQL(t *testing.T) {
	for _, c := range []struct {
		name    string
		own     []string
		applied cache.Settings
		want    cache.Settings
		sql     string
		err     string
	}{
		{"already there", nil, cache.Settings{cache.TimeZone: "UTC"}, cache.Settings{cache.TimeZone: "UTC"}, "", ""},
		{"set a value", nil, cache.Settings{}, cache.Settings{cache.DateStyle: "SQL, DMY"},
			"SELECT set_config(E'DateStyle', E'SQL, DMY', false)", ""},
		{"quotes and backslashes escaped", nil, cache.Settings{}, cache.Settings{cache.SearchPath: `"it's", a\b`},
			`SELECT set_config(E'search_path', E'"it''s", a\\b', false)`, ""},
		{"back to the default", nil, cache.Settings{cache.TimeZone: "UTC"}, cache.Settings{},
			"RESET TimeZone", ""},
		{"reset and set", nil, cache.Settings{cache.TimeZone: "UTC"}, cache.Settings{cache.IntervalStyle: "iso_8601"},
			"RESET TimeZone; SELECT set_config(E'IntervalStyle', E'iso_8601', false)", ""},
		{"the login's own value where the client has the default", []string{"extra_float_digits"}, cache.Settings{}, cache.Settings{},
			"", "sets extra_float_digits itself"},
		{"the login's own value overridden", []string{"timezone"}, cache.Settings{}, cache.Settings{cache.TimeZone: "UTC"},
			"SELECT set_config(E'TimeZone', E'UTC', false)", ""},
		{"NUL refused", nil, cache.Settings{}, cache.Settings{cache.TimeZone: "a\x00b"}, "", "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := &refreshConn{own: map[string]bool{}, settings: c.applied}
			for _, o := range c.own {
				rc.own[o] = true
			}
			sql, err := rc.settingsSQL(&c.want)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || sql != c.sql {
				t.Fatalf("got %q, %v; want %q", sql, err, c.sql)
			}
		})
	}
}

func TestRefreshRequestMessages(t *testing.T) {
	params := materialize.Params{Types: []uint32{23}, Values: [][]byte{[]byte("5")}}
	for _, c := range []struct {
		shape string
		types string // message types in order
	}{
		{"", "Q"},
		{"BES", "PBES"},
		{"BDPES", "PBDES"},
		{"BDSES", "PBDES"},
		{"PBES", "PBES"},
		{"PBDPES", "PBDES"},
		{"PBDSES", "PBDES"},
		{"P", ""},
		{"XYZ", ""},
	} {
		t.Run("shape "+c.shape, func(t *testing.T) {
			b, err := requestMessages(&materialize.RefreshRequest{SQL: "SELECT v FROM t WHERE id = $1", Shape: c.shape, Params: params})
			if c.types == "" {
				if err == nil {
					t.Fatal("an unknown shape was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for len(b) >= 5 {
				got = append(got, b[0])
				n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
				b = b[1+n:]
			}
			if string(got) != c.types {
				t.Fatalf("messages %q, want %q", got, c.types)
			}
		})
	}
	if _, err := requestMessages(&materialize.RefreshRequest{SQL: "SELECT 1\x00"}); err == nil {
		t.Fatal("a statement with NUL was accepted")
	}
}
