#!/usr/bin/env bash
# pgwire-bench.sh runs the PostgreSQL front-end benchmark (make bench-pgwire):
# installs PgBouncer if missing, then runs integration/cmd/pgwirebench in a
# throwaway PostgreSQL environment. Arguments go to pgwirebench.
set -euo pipefail
ENV_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$ENV_HOME/../.." && pwd)
# shellcheck source=lib.sh
. "$ENV_HOME/lib.sh"
need_packages /usr/sbin/pgbouncer pgbouncer
# Debian's package starts a system PgBouncer on port 6432; the benchmark
# runs its own and leaves that one alone.
cd "$REPO_ROOT"
go build -o "${TMPDIR:-/tmp}/pgwirebench.$$" ./integration/cmd/pgwirebench
trap 'rm -f "${TMPDIR:-/tmp}/pgwirebench.$$"' EXIT
"$ENV_HOME/freshet-env" run --only pg -- "${TMPDIR:-/tmp}/pgwirebench.$$" "$@"
