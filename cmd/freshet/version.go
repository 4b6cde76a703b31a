package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// versionString is the version, with the commit the binary was built from
// when the Go toolchain recorded one (a `go build` in a git checkout), so
// an operator can tell which build is running.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return version + vcsSuffix(info.Settings)
}

// vcsSuffix is " (revision)", " (revision, modified)" or "".
func vcsSuffix(settings []debug.BuildSetting) string {
	var rev string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	parts := []string{rev}
	if modified {
		parts = append(parts, "modified")
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
