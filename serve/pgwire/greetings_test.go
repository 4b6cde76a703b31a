package pgwire

import (
	"strconv"
	"testing"
)

func TestGreetingsBounded(t *testing.T) {
	var g greetings
	for i := range maxGreetings + 10 {
		g.store(strconv.Itoa(i), []byte{byte(i)})
	}
	if _, ok := g.load(strconv.Itoa(maxGreetings + 5)); ok {
		t.Error("a greeting past the bound was kept")
	}
	g.store("7", []byte("renewed"))
	if b, ok := g.load("7"); !ok || string(b) != "renewed" {
		t.Errorf("greeting of a known key = %q, %v; want it renewed at the bound", b, ok)
	}
	if len(g.m) != maxGreetings {
		t.Errorf("%d greetings kept, want %d", len(g.m), maxGreetings)
	}
}
