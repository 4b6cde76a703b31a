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

// A node asked to stop drains while every part still runs, and only then
// ends them.
func TestRunPartsDrainsFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	var fedDuringDrain, drained bool
	parts := []Part{
		{Name: "materializer", Run: func(ctx context.Context) error {
			for {
				select {
				case fed <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}},
		{Name: "front end", Run: blockUntilDone, Drain: func(ctx context.Context) {
			<-fed // the other part still runs
			fedDuringDrain = ctx.Err() == nil
			drained = true
		}},
	}
	err := RunParts(ctx, parts, cancel, nil)
	if err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
	if !drained || !fedDuringDrain {
		t.Fatalf("drained %v, parts running during the drain %v; want both", drained, fedDuringDrain)
	}
}
