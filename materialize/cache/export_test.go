package cache

// NewWithHash makes a Store with a chosen key hash, so tests can force
// hash collisions.
func NewWithHash(cfg Config, hash func([]byte) (uint64, uint64)) (*Store, error) {
	return newStore(cfg, hash)
}
