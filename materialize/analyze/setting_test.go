package analyze

import (
	"slices"
	"testing"
)

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

func TestSearchPathChange(t *testing.T) {
	tests := []struct {
		sql   string
		path  []string
		value string
		ok    bool
	}{
		{sql: "SET search_path TO app, public", path: []string{"app", "public"}, value: `"app", "public"`, ok: true},
		{sql: `set search_path = "$user", Public`, path: []string{"$user", "public"}, value: `"$user", "public"`, ok: true},
		{sql: `SET SESSION search_path TO "Tenant"`, path: []string{"Tenant"}, value: `"Tenant"`, ok: true},
		{sql: "SET search_path = 'a, b'", path: []string{"a, b"}, value: `"a, b"`, ok: true},
		{sql: `SET search_path TO 'we"ird'`, path: []string{`we"ird`}, value: `"we""ird"`, ok: true},
		{sql: "SET SCHEMA 'app'", path: []string{"app"}, value: `"app"`, ok: true},
		{sql: "SET search_path TO DEFAULT", ok: true},
		{sql: "RESET search_path", ok: true},
		{sql: "SET LOCAL search_path TO app"},
		{sql: "SET search_path FROM CURRENT"},
		{sql: "SET TimeZone = 'UTC'"},
		{sql: "SET search_path TO app; SELECT 1"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			path, value, ok := SearchPathChange(tt.sql)
			if !slices.Equal(path, tt.path) || value != tt.value || ok != tt.ok {
				t.Fatalf("SearchPathChange = %q, %q, %v; want %q, %q, %v", path, value, ok, tt.path, tt.value, tt.ok)
			}
		})
	}
}

func TestStatements(t *testing.T) {
	tests := []struct {
		sql  string
		want []string
	}{
		{sql: "SELECT 1", want: []string{"SELECT 1"}},
		{sql: "SELECT 1; SET search_path TO x", want: []string{"SELECT 1", " SET search_path TO x"}},
		{sql: "SELECT ';'; RESET ALL;", want: []string{"SELECT ';'", " RESET ALL"}},
		{sql: "SELECT $$;$$ AS a; DISCARD ALL", want: []string{"SELECT $$;$$ AS a", " DISCARD ALL"}},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			got, ok := Statements(tt.sql)
			if !ok || !slices.Equal(got, tt.want) {
				t.Fatalf("Statements = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
	if _, ok := Statements("SELECT (; SET search_path TO x"); ok {
		t.Fatal("text that does not parse was split")
	}
}

func TestSessionReset(t *testing.T) {
	const npgsql = "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;CLOSE ALL;UNLISTEN *;SELECT pg_advisory_unlock_all();DISCARD SEQUENCES;DISCARD TEMP"
	tests := []struct {
		sql               string
		reset, statements bool
	}{
		{sql: "DISCARD ALL", reset: true, statements: true},
		{sql: "discard all;", reset: true, statements: true},
		{sql: npgsql, reset: true},
		{sql: npgsql + ";DEALLOCATE ALL", reset: true, statements: true},
		{sql: "RESET SESSION AUTHORIZATION; RESET ALL; DISCARD TEMP", reset: true},
		{sql: "RESET ALL"},
		{sql: "SET SESSION AUTHORIZATION DEFAULT; RESET ALL"},
		{sql: "DISCARD TEMP"},
		{sql: "DISCARD ALL; SET search_path TO x"},
		{sql: npgsql + ";SET ROLE reader"},
		{sql: "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;SELECT pg_advisory_unlock(1);DISCARD TEMP"},
		{sql: "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;SELECT pg_advisory_unlock_all() FROM t;DISCARD TEMP"},
		{sql: "SET LOCAL SESSION AUTHORIZATION DEFAULT;RESET ALL;DISCARD TEMP"},
		{sql: "DEALLOCATE ALL"},
		{sql: "SELECT 1"},
		{sql: "DISCARD"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			reset, statements := SessionReset(tt.sql)
			if reset != tt.reset || reset && statements != tt.statements {
				t.Fatalf("SessionReset = %v, %v; want %v, %v", reset, statements, tt.reset, tt.statements)
			}
		})
	}
}
