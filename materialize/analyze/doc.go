// Package analyze decides whether a PostgreSQL statement may be answered
// from freshet's result cache, and if so what the result depends on.
//
// [Analyze] parses a statement with pg_query (the PostgreSQL parser itself,
// through cgo), walks the tree against a [Catalog] of the origin
// (function volatility from pg_proc, relation kinds and persistence from
// pg_class) and returns a [Result]: cacheable or not, with a [Reason] from a
// fixed set when not; the pg_query fingerprint; the base tables read,
// resolved through the session's search_path; the equality predicates of the
// AND chains (per table scan, through aliases); and the equi-join column
// pairs. The rules and the reasons are recorded in ADRs/0003-query-analysis.md.
//
// Analysis is meant to run once per statement text or prepared statement,
// not per execution: [Memo] keeps the verdicts for one catalog snapshot. It never panics on any input (fuzzed), and anything it
// does not understand is reported as not cacheable.
//
// # Concurrency
//
// Analyze is safe for concurrent use as long as the Catalog is; [Snapshot]
// is immutable after [NewSnapshot] and safe to share.
package analyze

/*
Design notes for maintainers.

A predicate (table scan, column, values) is emitted only when it is a
necessary condition for a row of that scan to influence the result: it sits
in the top-level AND chain of the WHERE clause of the query block that scans
the table, or in the ON clause of an INNER join inside that block. `=` is
strict, so a WHERE predicate stays necessary even for the nullable side of an
outer join; ON clauses of outer joins are not used. Anything under OR, NOT,
CASE or a cast on the column side is not a predicate. A predicate is only
emitted for columns whose equality is byte equality of a canonical form
(see predicateTypes): for citext, floats, numeric or non-deterministic
collations two different encodings can be equal, and the dependency index
could miss a change.

The walker is an allow-list: every node type it does not know makes the
statement uncacheable (ReasonUnsupported), so a new PostgreSQL syntax can
never slip through as cacheable.
*/
