package analyze

import "testing"

func TestSettingChanged(t *testing.T) {
	tests := []struct {
		sql  string
		name string
		ok   bool
	}{
		{sql: "SET TimeZone = 'UTC'", name: "timezone", ok: true},
		{sql: "set session timezone to 'Europe/Paris'", name: "timezone", ok: true},
		{sql: "SET TIME ZONE 'UTC'", name: "timezone", ok: true},
		{sql: "SET TIME ZONE LOCAL", name: "timezone", ok: true},
		{sql: "SET NAMES 'UTF8'", name: "client_encoding", ok: true},
		{sql: "SET client_min_messages TO 'warning'", name: "client_min_messages", ok: true},
		{sql: "SET statement_timeout TO DEFAULT", name: "statement_timeout", ok: true},
		{sql: "RESET intervalstyle", name: "intervalstyle", ok: true},
		{sql: "SET application_name FROM CURRENT", name: "application_name", ok: true},
		{sql: "SET app.tenant = '7'", name: "app.tenant", ok: true},
		{sql: "SET search_path = app, public", name: "search_path", ok: true},
		{sql: "SET SCHEMA 'app'", name: "search_path", ok: true},
		{sql: "SET ROLE reader", name: "role", ok: true},
		{sql: "SET LOCAL statement_timeout = 0"},
		{sql: "RESET ALL"},
		{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"},
		{sql: "SET a = 1; SET b = 2"},
		{sql: "SET TimeZone ="},
		{sql: "SELECT set_config('a.b', '1', false)"},
		{sql: "DISCARD ALL"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			name, ok := SettingChanged(tt.sql)
			if name != tt.name || ok != tt.ok {
				t.Fatalf("SettingChanged = %q, %v; want %q, %v", name, ok, tt.name, tt.ok)
			}
		})
	}
}
