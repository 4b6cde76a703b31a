package cache

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Config configures a Store.
type Config struct {
	// MaxBytes is the memory budget, in bytes, for responses, keys and
	// per-entry overhead together. Required.
	MaxBytes int64
	// MaxEntryBytes is the largest single entry admitted, so that one huge
	// result cannot evict everything else. Default MaxBytes/16.
	MaxEntryBytes int64
	// ExpectedEntries sizes ristretto's admission counters (ten per
	// entry). Default MaxBytes/1024, at least 1000.
	ExpectedEntries int64
	// OnEvict, if set, is called with each entry ristretto evicts for room
	// or declines to admit after Set returned true, so the dependency index
	// can forget it. It must not block.
	OnEvict func(*Entry)
}

// Store holds cached responses. See the package documentation.
type Store struct {
	c        *ristretto.Cache[[]byte, *Entry]
	maxEntry int64
	stats    counters
	// gen is bumped by Clear; entries set under an older generation are
	// never served, even if ristretto applies their Set after the Clear.
	gen atomic.Uint64
}

type counters struct {
	hits, misses, collisions, invalidated, tooLarge atomic.Uint64
}

// Stats are the store's counters since New.
type Stats struct {
	Hits   uint64
	Misses uint64
	// Collisions are lookups whose hash matched an entry with another key.
	Collisions uint64
	// Invalidated are lookups that found an invalidated entry.
	Invalidated uint64
	// TooLarge are Sets refused for exceeding MaxEntryBytes.
	TooLarge uint64
}

// New validates cfg and makes a Store.
func New(cfg Config) (*Store, error) { return newStore(cfg, keyToHash) }

func newStore(cfg Config, hash func([]byte) (uint64, uint64)) (*Store, error) {
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("cache: MaxBytes must be positive, got %d", cfg.MaxBytes)
	}
	if cfg.MaxEntryBytes < 0 || cfg.ExpectedEntries < 0 {
		return nil, errors.New("cache: MaxEntryBytes and ExpectedEntries must not be negative")
	}
	if cfg.MaxEntryBytes == 0 {
		cfg.MaxEntryBytes = max(cfg.MaxBytes/16, 1)
	}
	if cfg.ExpectedEntries == 0 {
		cfg.ExpectedEntries = max(cfg.MaxBytes/1024, 1000)
	}
	rc := &ristretto.Config[[]byte, *Entry]{
		NumCounters:        cfg.ExpectedEntries * 10,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		KeyToHash:          hash,
		IgnoreInternalCost: true, // EntryOverhead already charges it
	}
	if cfg.OnEvict != nil {
		onEvict := cfg.OnEvict
		rc.OnEvict = func(it *ristretto.Item[*Entry]) {
			if it.Value != nil { // Clear also reports pending deletions
				onEvict(it.Value)
			}
		}
		rc.OnReject = rc.OnEvict
	}
	c, err := ristretto.NewCache(rc)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Store{c: c, maxEntry: cfg.MaxEntryBytes}, nil
}

// keyToHash gives ristretto two independent 64-bit hashes; the store
// still compares the full key on every hit.
func keyToHash(k []byte) (uint64, uint64) { return xxhash.Sum64(k), z.MemHash(k) }

// Get returns the valid entry stored under key.
func (s *Store) Get(key []byte) (*Entry, bool) {
	e, ok := s.c.Get(key)
	switch {
	case !ok || e == nil:
		s.stats.misses.Add(1)
		return nil, false
	case !bytes.Equal(e.Key(), key):
		s.stats.collisions.Add(1)
		s.stats.misses.Add(1)
		return nil, false
	case !e.servable(s.gen.Load()):
		s.stats.invalidated.Add(1)
		s.stats.misses.Add(1)
		return nil, false
	}
	s.stats.hits.Add(1)
	return e, true
}

// Set offers e to the store under e.Key(); set an entry once. It returns false when the entry
// was refused (too large, or ristretto's buffers are full); ristretto may
// also decline it later under memory pressure. Either way the caller just
// serves from the origin next time.
func (s *Store) Set(e *Entry) bool {
	cost := e.cost()
	if cost > s.maxEntry {
		s.stats.tooLarge.Add(1)
		return false
	}
	e.stamp(s.gen.Load())
	return s.c.Set(e.Key(), e, cost)
}

// Remove invalidates e and deletes it if it is still the entry stored
// under its key (a newer fill of the same key is left alone).
func (s *Store) Remove(e *Entry) {
	e.Invalidate()
	if cur, ok := s.c.Get(e.Key()); ok && cur == e {
		s.c.Del(e.Key())
	}
}

// Clear removes every entry (a source reset). Entries whose Set is still
// in flight are not served afterwards either.
func (s *Store) Clear() {
	s.gen.Add(1)
	s.c.Clear()
}

// Wait blocks until every Set so far has been applied; for tests.
func (s *Store) Wait() { s.c.Wait() }

// Close stops the store's goroutines; the store must not be used after.
func (s *Store) Close() { s.c.Close() }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Hits: s.stats.hits.Load(), Misses: s.stats.misses.Load(),
		Collisions: s.stats.collisions.Load(), Invalidated: s.stats.invalidated.Load(),
		TooLarge: s.stats.tooLarge.Load(),
	}
}
