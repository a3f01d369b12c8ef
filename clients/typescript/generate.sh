#!/usr/bin/env bash
# The generated TypeScript (clients/typescript/src/gen, committed) from proto/ with buf and
# protoc-gen-es (template: clients/typescript/buf.gen.yaml; the plugin comes from this
# package's node_modules, installed here with `npm ci` when missing or stale).
#
#   bash clients/typescript/generate.sh          regenerate src/gen (`npm run generate`)
#   bash clients/typescript/generate.sh --check  regenerate into a temporary directory and
#                                                fail if it differs from src/gen (CI, via
#                                                tools/check_generated.sh)
#
# Under --check a missing node/npm is a skip with the reason outside CI and a failure under
# CI=true, as for the other buf checks (tools/buf_env.sh).
set -euo pipefail
# shellcheck source=tools/buf_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/buf_env.sh"
cd "$REPO_ROOT"

TS_DIR=clients/typescript
GEN_DIR="$TS_DIR/src/gen"
mode="${1:-generate}"
case "$mode" in
  generate) ensure_buf || { echo "FAIL: generating needs node and npm" >&2 && exit 1; } ;;
  --check) ensure_buf || exit 0 ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
ensure_third_party

# ConnectError.findDetails needs google.rpc.ErrorInfo and BadRequest as generated messages,
# so error_details.proto joins build/third_party (buf.yaml's unlinted third-party module),
# copied from the installed googleapis-common-protos like the google/api files.
lay_error_details() {
  local rpc_dir
  rpc_dir="$("$PYTHON_BIN" -c 'import google.rpc; print(next(iter(google.rpc.__path__)))')"
  mkdir -p build/third_party/google/rpc
  cp "$rpc_dir/error_details.proto" build/third_party/google/rpc/
}

# npm ci rewrites node_modules/.package-lock.json, so a lockfile newer than it means the
# installed plugin may not be the pinned one.
ensure_ts_deps() {
  local stamp="$TS_DIR/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$TS_DIR/package-lock.json" -nt "$stamp" ]]; then
    echo "installing $TS_DIR dependencies (npm ci)" >&2
    (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
}

lay_error_details
ensure_ts_deps

if [[ "$mode" == generate ]]; then
  "$BUF" generate --template "$TS_DIR/buf.gen.yaml"
  echo "generated $GEN_DIR"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$BUF" generate --template "$TS_DIR/buf.gen.yaml" -o "$tmp"
if ! diff -r "$tmp/$GEN_DIR" "$GEN_DIR" >"$tmp/diff.txt"; then
  echo "FAIL: $GEN_DIR differs from what buf generates from proto/:" >&2
  head -n 200 "$tmp/diff.txt" >&2
  echo "Run 'bash $TS_DIR/generate.sh' (or 'npm run generate' in $TS_DIR) and commit $GEN_DIR." >&2
  exit 1
fi
echo "generated code: $GEN_DIR is up to date with proto/"
