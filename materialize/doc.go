// Package materialize owns the cache of query results: query analysis
// (analyze), the result store (cache), the dependency index and its
// invalidation from the change stream, fills that are never stale,
// the watermark and staleness bound, read-your-writes fences and
// single-flighted misses. See ADRs 0003 and 0007.
//
// A wire front end uses it through [Cache]: [Materializer.Lookup] answers
// a [Request] with a hit, a [Ticket] to fill from the origin ([Materializer.Put]
// or [Materializer.Abandon]), or a reason to go to the origin unfilled.
// [Materializer.Run] applies batches from the bus; a batch's commits are
// first confirmed visible at the origin ([Visibility]), then its changes
// invalidate what they can affect, then the watermark moves.
//
// Not built yet: refresh-ahead of hot invalidated entries, several
// sources per materializer, TTL rules for tables outside the change
// stream.
package materialize
