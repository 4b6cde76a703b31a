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
			if c.unknown.Load() != (tt.uncached != "") || strings.Join(why, ",") != tt.uncached {
				t.Fatalf("unknown = %v, counted %q; want %q", c.unknown.Load(), why, tt.uncached)
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
	if !c.unknown.Load() || why != uncachedEncoding {
		t.Fatalf("a session whose client encoding is SJIS: unknown %v, counted %q", c.unknown.Load(), why)
	}
}
