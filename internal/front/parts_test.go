package front

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func blockUntilDone(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

func TestRunParts(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		parts   []Part
		cancel  bool   // end the caller's context instead
		wantErr string // "" for nil
	}{
		{"a failing part stops the others and is named", []Part{
			{Name: "steady", Run: blockUntilDone},
			{Name: "broken", Run: func(context.Context) error { return boom }},
		}, false, "broken: boom"},
		{"the caller's context ending is no failure", []Part{
			{Name: "a", Run: blockUntilDone},
			{Name: "b", Run: blockUntilDone},
		}, true, ""},
		{"a part returning nil still ends the node", []Part{
			{Name: "steady", Run: blockUntilDone},
			{Name: "done", Run: func(context.Context) error { return nil }},
		}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			readied, stopped := false, false
			ready := func() {
				readied = true
				if tt.cancel {
					cancel()
				}
			}
			err := RunParts(ctx, tt.parts, ready, func() { stopped = true })
			if !readied || !stopped {
				t.Fatalf("ready called %v, stop called %v; want both", readied, stopped)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, boom)):
				t.Fatalf("err = %v, want %q wrapping boom", err, tt.wantErr)
			}
			if ctx.Err() != nil && !tt.cancel {
				t.Fatal("RunParts outlived by the test's deadline")
			}
		})
	}
}
