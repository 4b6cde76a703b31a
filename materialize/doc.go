// Package materialize owns the cache of query results: query analysis, the
// dependency index, invalidation from the change stream, fills that are
// never stale, watermarks, read-your-writes fences and refresh-ahead.
package materialize
