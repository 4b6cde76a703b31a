// Package cache is the materializer's result store: the exact encoded wire
// response of a cacheable statement, keyed by everything that can change
// those bytes, held in ristretto with cost = bytes under a memory budget.
//
// A [Key] is built with [AppendKey] into a caller-owned buffer, so a lookup
// allocates nothing. [Store.Get] returns the stored [Entry], whose
// Response is written to the client as is: a hit costs no encoding and no
// allocation proportional to the result. Every hit compares the full key
// stored in the entry, so a 64-bit hash collision is a miss, never another
// statement's result. A key may carry IDs in place of the statement's
// text and of the session's database and settings (Key.StatementID,
// Key.ContextID), which keeps it a few bytes long: the caller must never
// give one ID to two different values.
//
// An entry can be invalidated ([Entry.Invalidate]) by whoever tracks its
// dependencies; from then on Get never returns it, even while ristretto
// still holds it (ristretto applies sets asynchronously, so a removal alone
// could race with a pending insert).
//
// The store never returns an error for lack of memory: ristretto evicts,
// or declines to admit, and the caller goes to the origin.
//
// # Concurrency
//
// A Store is safe for concurrent use. An Entry is immutable once set,
// apart from its invalidation flag.
package cache
