package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadyProbe(t *testing.T) {
	tests := []struct {
		name     string
		ready    func() error
		wantCode int
		wantBody string
	}{
		{"serving", func() error { return nil }, http.StatusOK, "ready"},
		{"draining", func() error { return errors.New("stopping: draining") }, http.StatusServiceUnavailable, "stopping: draining"},
		{"a node without clients has no probe", nil, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Handler(prometheus.NewRegistry(), func() any { return nil }, tt.ready)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("/ready: %d %q, want %d containing %q", rec.Code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}
