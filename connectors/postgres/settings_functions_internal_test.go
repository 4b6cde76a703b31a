package postgres

import (
	"slices"
	"testing"
)

func TestSettingsFunctions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fns      []userFunction
		want     []string
		triggers bool
	}{
		{name: "none", fns: []userFunction{{name: "f", body: "SELECT 1"}}},
		{name: "SET search_path", fns: []userFunction{{name: "to_b", body: "BEGIN SET search_path TO b; END"}}, want: []string{"to_b"}},
		{name: "set_config", fns: []userFunction{{name: "F", body: "BEGIN PERFORM pg_catalog.SET_CONFIG('role', 'x', false); END"}}, want: []string{"f"}},
		{name: "SET LOCAL", fns: []userFunction{{name: "f", body: "SET LOCAL bytea_output = escape"}}, want: []string{"f"}},
		{name: "SET SESSION ROLE", fns: []userFunction{{name: "f", body: "SET SESSION ROLE x"}}, want: []string{"f"}},
		{name: "SET SCHEMA", fns: []userFunction{{name: "f", body: "SET SCHEMA 'b'"}}, want: []string{"f"}},
		{name: "RESET ALL", fns: []userFunction{{name: "f", body: "RESET ALL"}}, want: []string{"f"}},
		{name: "dynamic SQL", fns: []userFunction{{name: "f", body: "EXECUTE 'SET extra_float_digits = ' || n"}}, want: []string{"f"}},
		{name: "a setting named when it runs, format", fns: []userFunction{{name: "f", body: "EXECUTE format('SET %I = %L', k, v)"}}, want: []string{"f"}},
		{name: "a setting named when it runs, SET LOCAL", fns: []userFunction{{name: "f", body: "EXECUTE format( 'set local %s to %L', k, v)"}}, want: []string{"f"}},
		{name: "a setting named when it runs, concatenated", fns: []userFunction{{name: "f", body: "EXECUTE 'RESET ' || quote_ident(k); "}}, want: []string{"f"}},
		{name: "a dynamic UPDATE's SET", fns: []userFunction{{name: "f", body: "EXECUTE format('UPDATE %I SET %I = %L', t, c, v)"}}},
		{name: "quoted name", fns: []userFunction{{name: "f", body: `SET "search_path" = b`}}, want: []string{"f"}},
		{name: "reported or inert settings", fns: []userFunction{{name: "f", body: "SET statement_timeout = 0; SET TIME ZONE 'UTC'; SET application_name = x"}}},
		{name: "an UPDATE's SET", fns: []userFunction{{name: "f", body: "UPDATE t SET v = 1, w = 2"}}},
		{name: "a word that only contains one", fns: []userFunction{{name: "f", body: "SELECT my_set_config_table.x, offset_role FROM my_set_config_table"}}},
		{
			name: "callers, transitively",
			fns: []userFunction{
				{name: "outer_fn", body: "SELECT middle()"},
				{name: "middle", body: "PERFORM s.inner_fn()"},
				{name: "inner_fn", body: "SET search_path = b"},
				{name: "bystander", body: "SELECT inner_fn_not"},
			},
			want: []string{"inner_fn", "middle", "outer_fn"},
		},
		{
			name:     "a trigger",
			fns:      []userFunction{{name: "trg", body: "BEGIN PERFORM set_config('search_path', 'b', false); RETURN NEW; END", trigger: true}},
			want:     []string{"trg"},
			triggers: true,
		},
		{name: "a harmless trigger", fns: []userFunction{{name: "trg", body: "BEGIN RETURN NEW; END", trigger: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, triggers := settingsFunctions(tc.fns)
			if !slices.Equal(got, tc.want) || triggers != tc.triggers {
				t.Fatalf("got %q, triggers %v; want %q, %v", got, triggers, tc.want, tc.triggers)
			}
		})
	}
}
