# shellcheck shell=bash
# Sourced by tools/check_generated.sh, tools/buf_check.sh and .ci/run: finds the pinned buf.
#
# buf is the npm package @bufbuild/buf at the version in package-lock.json, installed into
# ./node_modules (gitignored) with `npm ci`. After `ensure_buf`, $BUF is its path.
# Outside CI a missing npm is a skip with a printed reason (ensure_buf returns 1); under
# CI=true it is a failure (ensure_buf exits 1).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUF="$REPO_ROOT/node_modules/.bin/buf"
PYTHON_BIN="${PYTHON_BIN:-$REPO_ROOT/.venv/bin/python}"

is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }

# skip_or_fail REASON: under CI, print and exit 1; otherwise print a skip and return 1.
skip_or_fail() {
  if is_ci; then
    echo "FAIL: $1 (CI=true: a missing tool is a failure, not a skip)" >&2
    exit 1
  fi
  echo "SKIP: $1" >&2
  return 1
}

pinned_buf_version() {
  node -e 'process.stdout.write(require(process.argv[1]).packages["node_modules/@bufbuild/buf"].version)' \
    "$REPO_ROOT/package-lock.json"
}

ensure_buf() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    skip_or_fail "node/npm not found; buf comes from the npm package @bufbuild/buf" || return 1
  fi
  local want have=""
  want="$(pinned_buf_version)"
  if [[ -x "$BUF" ]]; then
    have="$("$BUF" --version 2>/dev/null || true)"
  fi
  if [[ "$have" != "$want" ]]; then
    echo "installing buf $want from package-lock.json (npm ci; had: ${have:-none})" >&2
    (cd "$REPO_ROOT" && npm ci --no-audit --no-fund --loglevel=error) >&2
    have="$("$BUF" --version)"
    if [[ "$have" != "$want" ]]; then
      echo "FAIL: npm ci installed buf '$have', package-lock.json pins '$want'" >&2
      exit 1
    fi
  fi
}

# google/api/*.proto for buf.yaml's build/third_party module: tools/codegen.py copies them
# from the installed googleapis-common-protos package (never committed).
ensure_third_party() {
  if [[ ! -f "$REPO_ROOT/build/third_party/google/api/annotations.proto" ]]; then
    echo "laying build/third_party with tools/codegen.py --descriptor-only" >&2
    (cd "$REPO_ROOT" && "$PYTHON_BIN" tools/codegen.py --descriptor-only)
  fi
}
