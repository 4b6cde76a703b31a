package pgwire

import (
	"strings"
	"testing"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

func TestUncachedBy(t *testing.T) {
	tests := []struct {
		sql  string
		want string // "" keeps the session answered from the cache
	}{
		{"SET client_min_messages TO 'warning'", ""},
		{"SET standard_conforming_strings = on", ""},
		{"SET intervalstyle = iso_8601", ""},
		{"SET SESSION timezone TO 'UTC'", ""},
		{"SET TIME ZONE 'Europe/Paris'", ""},
		{"SET NAMES 'UTF8'", ""},
		{"SET statement_timeout = '5s'", ""},
		{"RESET application_name", ""},
		{"SELECT 1", ""},
		{"UPDATE t SET v = 1", ""},
		{"SET search_path = app", uncachedSetting},
		{"SET ROLE reader", uncachedSetting},
		{"SET SESSION AUTHORIZATION reader", uncachedSetting},
		{"SET extra_float_digits = 3", uncachedSetting},
		{"SET bytea_output = 'escape'", uncachedSetting},
		{"SET app.tenant_id = '7'", uncachedSetting},
		{"SET LOCAL statement_timeout = 0", uncachedSetting},
		{"RESET ALL", uncachedSetting},
		{"SET timezone = 'UTC'; SET ROLE reader", uncachedSetting},
		{"SELECT 1; SET extra_float_digits = 0", uncachedSetting},
		{"SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;", uncachedSessionState},
		{"SELECT 1; SET search_path TO tenant", uncachedSetting},
		{"UPDATE t SET v = 1; CREATE TEMP TABLE x (i int)", uncachedTemporary},
		{"SELECT 1; SET TimeZone = 'UTC'", ""},
		{"SELECT 1; SELECT 2", ""},
		{"DISCARD ALL", uncachedSessionState},
		{"PREPARE p AS SELECT 1", uncachedSessionState},
		{"SELECT set_config('search_path', 'x', false)", uncachedSetConfig},
		{"CREATE TEMP TABLE t (i int)", uncachedTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			if got := uncachedBy(materialize.Classify(tt.sql)); got != tt.want {
				t.Fatalf("uncachedBy = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParameterStatusFollowsKeyedSettings(t *testing.T) {
	tests := []struct {
		name, status string
		setting      cache.Setting
		value        string // the setting's value after, if keyed
		uncached     string // why the session became unknown, if it did
	}{
		{name: "time zone", status: "TimeZone\x00Asia/Tokyo\x00", setting: cache.TimeZone, value: "Asia/Tokyo"},
		{name: "date style", status: "DateStyle\x00SQL, DMY\x00", setting: cache.DateStyle, value: "SQL, DMY"},
		{name: "interval style", status: "IntervalStyle\x00iso_8601\x00", setting: cache.IntervalStyle, value: "iso_8601"},
		{name: "application name", status: "application_name\x00web\x00", setting: cache.TimeZone, value: "Etc/UTC"},
		{name: "another client encoding", status: "client_encoding\x00LATIN1\x00", setting: cache.ClientEncoding, value: "LATIN1", uncached: uncachedEncoding},
		{name: "strings not standard", status: "standard_conforming_strings\x00off\x00", setting: cache.StandardConformingStrings, value: "off", uncached: uncachedEncoding},
		{name: "session authorization", status: "session_authorization\x00bob\x00", setting: cache.TimeZone, value: "Etc/UTC", uncached: uncachedParameterStatus},
		{name: "superuser", status: "is_superuser\x00on\x00", setting: cache.TimeZone, value: "Etc/UTC", uncached: uncachedParameterStatus},
	}
	greeting := cat(msg('S', "TimeZone\x00Etc/UTC\x00"), msg('S', "client_encoding\x00UTF8\x00"),
		msg('S', "standard_conforming_strings\x00on\x00"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var why []string
			c := newCacheState(materialize.Session{User: "u", Database: "d"}, nil, greeting, func(r string) { why = append(why, r) })
			before := c.req.Settings
			c.parameterStatus([]byte(tt.status))
			c.parameterStatus([]byte(tt.status)) // counted once
			if (c.unknown.Load() != 0) != (tt.uncached != "") || strings.Join(why, ",") != tt.uncached {
				t.Fatalf("unknown = %b, counted %q; want %q", c.unknown.Load(), why, tt.uncached)
			}
			c.syncSettings()
			if got := c.req.Settings[tt.setting]; got != tt.value {
				t.Fatalf("setting %d = %q, want %q", tt.setting, got, tt.value)
			}
			if *before != c.published.Load().settings && before == c.req.Settings {
				t.Fatal("the new settings did not reach the request")
			}
			if before[cache.TimeZone] != "Etc/UTC" {
				t.Fatal("the settings a lookup may still hold were changed in place")
			}
		})
	}
}

func TestGreetingInAnotherEncodingIsNotCached(t *testing.T) {
	var why string
	c := newCacheState(materialize.Session{User: "u", Database: "d"}, nil, msg('S', "client_encoding\x00SJIS\x00"), func(r string) { why = r })
	if c.unknown.Load() == 0 || why != uncachedEncoding {
		t.Fatalf("a session whose client encoding is SJIS: unknown %b, counted %q", c.unknown.Load(), why)
	}
}

func TestResetDone(t *testing.T) {
	tests := []struct {
		name       string
		statements bool
		errored    bool
		status     byte
		unknown    uint32 // before
		want       uint32 // after
		restored   bool
	}{
		{name: "discard all", statements: true, status: 'I', unknown: unknownState | unknownStatements, want: 0, restored: true},
		{name: "statements kept", status: 'I', unknown: unknownState | unknownStatements, want: unknownStatements, restored: true},
		{name: "not the startup encoding", statements: true, status: 'I', unknown: unknownState | unknownAtStartup, want: unknownAtStartup, restored: true},
		{name: "an error", statements: true, errored: true, status: 'I', unknown: unknownState, want: unknownState},
		{name: "in a transaction", statements: true, status: 'T', unknown: unknownState, want: unknownState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCacheState(materialize.Session{User: "u", Database: "d"}, nil, msg('S', "TimeZone\x00UTC\x00"), nil)
			c.searchPathSet(&capture{path: &pathChange{path: []string{"app"}, value: `"app"`}}, 'I')
			c.unknown.Store(tt.unknown)
			c.resetDone(&capture{reset: &sessionReset{statements: tt.statements}, errored: tt.errored}, tt.status)
			if got := c.unknown.Load(); got != tt.want {
				t.Fatalf("unknown %b, want %b", got, tt.want)
			}
			c.syncSettings()
			if restored := c.req.SearchPath == nil && c.req.Settings[cache.SearchPath] == "" && c.req.Settings[cache.TimeZone] == "UTC"; restored != tt.restored {
				t.Fatalf("startup settings restored: %v, want %v (search path %q, settings %q)", restored, tt.restored, c.req.SearchPath, *c.req.Settings)
			}
		})
	}
}
