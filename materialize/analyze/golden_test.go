package analyze_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata with the current results")

// goldenCase is one entry of testdata/{cacheable,uncacheable}.json. The
// inputs are written by hand; fingerprint and result are regenerated.
type goldenCase struct {
	Comment     string          `json:"comment"`
	Query       string          `json:"query"`
	SearchPath  []string        `json:"search_path,omitempty"`
	Role        string          `json:"role,omitempty"`
	Tx          string          `json:"tx,omitempty"`      // read_only, read_write, snapshot
	Session     string          `json:"session,omitempty"` // "unknown"; default known
	Fingerprint string          `json:"fingerprint,omitempty"`
	Result      *analyze.Result `json:"result"`
}

func loadCatalog(tb testing.TB) *analyze.Snapshot {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "catalog.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var d analyze.SnapshotData
	if err := json.Unmarshal(b, &d); err != nil {
		tb.Fatalf("catalog.json: %v", err)
	}
	return analyze.NewSnapshot(d)
}

func (c *goldenCase) input(tb testing.TB) analyze.Input {
	tb.Helper()
	in := analyze.Input{SQL: c.Query, SearchPath: c.SearchPath, Role: c.Role, Session: analyze.SessionKnown}
	switch c.Tx {
	case "":
	case "read_only":
		in.Tx = analyze.TxReadOnly
	case "read_write":
		in.Tx = analyze.TxReadWrite
	case "snapshot":
		in.Tx = analyze.TxSnapshot
	default:
		tb.Fatalf("%s: unknown tx %q", c.Comment, c.Tx)
	}
	if c.Session == "unknown" {
		in.Session = analyze.SessionUnknown
	}
	return in
}

func TestGolden(t *testing.T) {
	cat := loadCatalog(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*able.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runGoldenFile(t, cat, file) })
	}
}

func runGoldenFile(t *testing.T, cat analyze.Catalog, file string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	got := make([]goldenCase, len(cases))
	for i, c := range cases {
		res := analyze.Analyze(c.input(t), cat)
		got[i] = c
		got[i].Result = &res
		got[i].Fingerprint = ""
		if res.Fingerprint != 0 {
			got[i].Fingerprint = fmt.Sprintf("%016x", res.Fingerprint)
		}
	}
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	if *update {
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for i := range cases {
		want, _ := json.Marshal(cases[i])
		have, _ := json.Marshal(got[i])
		if !bytes.Equal(want, have) {
			t.Errorf("%s: case %q (%s)\n want %s\n  got %s", file, cases[i].Comment, cases[i].Query, want, have)
		}
	}
	if t.Failed() {
		t.Log("if the new results are right, regenerate with: go test ./materialize/analyze -run TestGolden -update")
	}
}

// TestCacheableIsReadOnly: Analyze marks what it finds cacheable read only
// without the read-only walk; the walk must agree on every such case.
func TestCacheableIsReadOnly(t *testing.T) {
	cat := loadCatalog(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "cacheable.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		in := c.input(t)
		if analyze.Analyze(in, cat).Cacheable && !analyze.ReadOnlyWalk(in, cat) {
			t.Errorf("%q (%s): cacheable, but the read-only walk says it may write", c.Comment, c.Query)
		}
	}
}
