package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command prints usage", args: nil, wantCode: 2, wantStderr: "usage: freshet"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "freshet dev"},
		{name: "help goes to stdout", args: []string{"--help"}, wantCode: 0, wantStdout: "usage: freshet"},
		{name: "up needs an origin", args: []string{"up"}, wantCode: 2, wantStderr: "--origin (or FRESHET_ORIGIN) is required"},
		{name: "ingest needs a source", args: []string{"ingest", "--kafka", "k:9092"}, wantCode: 2, wantStderr: "--source (or FRESHET_SOURCE) is required"},
		{name: "ingest needs brokers", args: []string{"ingest", "--source", "postgres://h/db"}, wantCode: 2, wantStderr: "--kafka (or FRESHET_KAFKA) is required"},
		{name: "serve needs a region", args: []string{"serve", "--kafka", "k:9092", "--origin", "postgres://h/db"}, wantCode: 2, wantStderr: "--region (or FRESHET_REGION) is required"},
		{name: "serve needs an origin", args: []string{"serve", "--region", "eu", "--kafka", "k:9092"}, wantCode: 2, wantStderr: "--origin (or FRESHET_ORIGIN) is required"},
		{name: "help lists ingest and serve", args: []string{"help"}, wantCode: 0, wantStdout: "serve      a regional node"},
		{name: "unknown command is an error", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
