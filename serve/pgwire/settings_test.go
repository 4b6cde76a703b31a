package pgwire

import (
	"testing"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

func TestKeepsSessionKnown(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"SET client_min_messages TO 'warning'", true},
		{"SET standard_conforming_strings = on", true},
		{"SET intervalstyle = iso_8601", true},
		{"SET SESSION timezone TO 'UTC'", true},
		{"SET TIME ZONE 'Europe/Paris'", true},
		{"SET NAMES 'UTF8'", true},
		{"SET statement_timeout = '5s'", true},
		{"RESET application_name", true},
		{"SET search_path = app", false},
		{"SET ROLE reader", false},
		{"SET SESSION AUTHORIZATION reader", false},
		{"SET extra_float_digits = 3", false},
		{"SET bytea_output = 'escape'", false},
		{"SET app.tenant_id = '7'", false},
		{"SET LOCAL statement_timeout = 0", false},
		{"RESET ALL", false},
		{"DISCARD ALL", false},
		{"SET timezone = 'UTC'; SET ROLE reader", false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			if got := keepsSessionKnown(tt.sql); got != tt.want {
				t.Fatalf("keepsSessionKnown = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParameterStatusFollowsKeyedSettings(t *testing.T) {
	tests := []struct {
		name, status string
		setting      cache.Setting
		value        string // the setting's value after, if keyed
		unknown      bool
	}{
		{name: "time zone", status: "TimeZone\x00Asia/Tokyo\x00", setting: cache.TimeZone, value: "Asia/Tokyo"},
		{name: "date style", status: "DateStyle\x00SQL, DMY\x00", setting: cache.DateStyle, value: "SQL, DMY"},
		{name: "interval style", status: "IntervalStyle\x00iso_8601\x00", setting: cache.IntervalStyle, value: "iso_8601"},
		{name: "application name", status: "application_name\x00web\x00", setting: cache.TimeZone, value: "Etc/UTC"},
		{name: "another client encoding", status: "client_encoding\x00LATIN1\x00", setting: cache.ClientEncoding, value: "LATIN1", unknown: true},
		{name: "strings not standard", status: "standard_conforming_strings\x00off\x00", setting: cache.StandardConformingStrings, value: "off", unknown: true},
		{name: "session authorization", status: "session_authorization\x00bob\x00", setting: cache.TimeZone, value: "Etc/UTC", unknown: true},
		{name: "superuser", status: "is_superuser\x00on\x00", setting: cache.TimeZone, value: "Etc/UTC", unknown: true},
	}
	greeting := cat(msg('S', "TimeZone\x00Etc/UTC\x00"), msg('S', "client_encoding\x00UTF8\x00"),
		msg('S', "standard_conforming_strings\x00on\x00"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCacheState(materialize.Session{User: "u", Database: "d"}, nil, greeting)
			before := c.req.Settings
			c.parameterStatus([]byte(tt.status))
			if c.unknown.Load() != tt.unknown {
				t.Fatalf("unknown = %v, want %v", c.unknown.Load(), tt.unknown)
			}
			c.syncSettings()
			if got := c.req.Settings[tt.setting]; got != tt.value {
				t.Fatalf("setting %d = %q, want %q", tt.setting, got, tt.value)
			}
			if *before != *c.settings.Load() && before == c.req.Settings {
				t.Fatal("the new settings did not reach the request")
			}
			if before[cache.TimeZone] != "Etc/UTC" {
				t.Fatal("the settings a lookup may still hold were changed in place")
			}
		})
	}
}

func TestGreetingInAnotherEncodingIsNotCached(t *testing.T) {
	c := newCacheState(materialize.Session{User: "u", Database: "d"}, nil, msg('S', "client_encoding\x00SJIS\x00"))
	if !c.unknown.Load() {
		t.Fatal("a session whose client encoding is SJIS is answered from the cache")
	}
}
