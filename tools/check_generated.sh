#!/usr/bin/env bash
# Generated-code drift check: regenerate clients/python and gateway/openapi.json with
# tools/codegen.py (the canonical generator, `make gen`) and fail if the result differs from
# what is committed (staged, to be exact: `git add` after `make gen` satisfies it), including
# new untracked files. Then check that `buf generate` (buf.gen.yaml) produces the same files
# (tools/buf_check.sh generate; outside CI skipped with a reason when npm is missing). Last,
# the same for the TypeScript client's generated code (clients/typescript/generate.sh --check).
set -euo pipefail
# shellcheck source=tools/buf_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/buf_env.sh"
cd "$REPO_ROOT"

"$PYTHON_BIN" tools/codegen.py

GENERATED=(clients/python gateway/openapi.json)
status=0
if ! git diff --quiet -- "${GENERATED[@]}"; then
  echo "FAIL: ${GENERATED[*]} differ from what tools/codegen.py generates from proto/:" >&2
  git --no-pager diff --stat -- "${GENERATED[@]}" >&2
  git --no-pager diff -- "${GENERATED[@]}" | head -n 200 >&2 || true  # head may close the pipe
  status=1
fi
untracked="$(git ls-files --others --exclude-standard -- "${GENERATED[@]}")"
if [[ -n "$untracked" ]]; then
  echo "FAIL: tools/codegen.py generated files that are not committed:" >&2
  echo "$untracked" >&2
  status=1
fi
if ((status)); then
  echo "Run 'make gen' and commit ${GENERATED[*]}." >&2
  exit 1
fi
echo "generated code: ${GENERATED[*]} up to date with proto/"

bash tools/buf_check.sh generate

# The TypeScript client's committed clients/typescript/src/gen: buf + protoc-gen-es into a
# temporary directory, compared file by file (npm ci in clients/typescript when needed).
bash clients/typescript/generate.sh --check
