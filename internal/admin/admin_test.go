package admin

import (
	"encoding/json"
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
			h := Handler(prometheus.NewRegistry(), Endpoints{Status: func() any { return nil }, Ready: tt.ready})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("/ready: %d %q, want %d containing %q", rec.Code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestQueriesEndpoint(t *testing.T) {
	type row struct {
		Query string `json:"query"`
	}
	with := Handler(prometheus.NewRegistry(), Endpoints{Status: func() any { return nil },
		Queries: func() any { return []row{{"SELECT v FROM t WHERE id = $1"}} }})
	rec := httptest.NewRecorder()
	with.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/queries", nil))
	var got []row
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil || rec.Code != http.StatusOK || len(got) != 1 || got[0].Query == "" {
		t.Fatalf("/queries: %d %+v (%v)", rec.Code, got, err)
	}
	without := Handler(prometheus.NewRegistry(), Endpoints{Status: func() any { return nil }})
	rec = httptest.NewRecorder()
	without.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/queries", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("/queries of a node without clients: %d, want 404", rec.Code)
	}
	if p := (Endpoints{Queries: func() any { return nil }}).Paths(); p != "/metrics /status /queries" {
		t.Fatalf("Paths() = %q", p)
	}
}
