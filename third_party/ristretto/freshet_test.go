// This file is freshet's, not upstream's (see FRESHET.md).

package ristretto

import (
	"testing"
	"time"
	"unsafe"
)

// TestStoreItemSize holds the fork's one purpose: an item with a pointer
// value costs 24 bytes in the store's maps (48 upstream). freshet's
// cache.EntryOverhead is calibrated on it.
func TestStoreItemSize(t *testing.T) {
	if n := unsafe.Sizeof(storeItem[*int]{}); n != 24 {
		t.Fatalf("storeItem[*int] is %d bytes, want 24", n)
	}
}

func TestExpiryRoundTrip(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		t      time.Time
		zero   bool
		passed bool
	}{
		{"none", time.Time{}, true, false},
		{"future", now.Add(time.Hour), false, false},
		{"past", now.Add(-time.Hour), false, true},
		{"before 1970", time.Unix(-10, 0), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := toExpiry(tc.t)
			if e.isZero() != tc.zero || e.passed() != tc.passed {
				t.Fatalf("zero %v passed %v, want %v %v", e.isZero(), e.passed(), tc.zero, tc.passed)
			}
			if !tc.zero && tc.t.Unix() > 0 && !e.time().Equal(tc.t) {
				t.Fatalf("time() = %v, want %v", e.time(), tc.t)
			}
			if !tc.zero && storageBucket(e.time()) != storageBucket(tc.t) && tc.t.Unix() > 0 {
				t.Fatalf("bucket %d, want %d", storageBucket(e.time()), storageBucket(tc.t))
			}
		})
	}
}
