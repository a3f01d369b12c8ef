#!/usr/bin/env bash
# Generated-code drift check: regenerate clients/python with tools/codegen.py (the canonical
# generator, `make gen`) and fail if the result differs from what is committed (staged, to be
# exact: `git add` after `make gen` satisfies it), including new untracked files. Then check
# that `buf generate` (buf.gen.yaml) produces the same files (tools/buf_check.sh generate;
# outside CI skipped with a reason when npm is missing).
set -euo pipefail
# shellcheck source=tools/buf_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/buf_env.sh"
cd "$REPO_ROOT"

"$PYTHON_BIN" tools/codegen.py

status=0
if ! git diff --quiet -- clients/python; then
  echo "FAIL: clients/python differs from what tools/codegen.py generates from proto/:" >&2
  git --no-pager diff --stat -- clients/python >&2
  git --no-pager diff -- clients/python | head -n 200 >&2 || true  # head may close the pipe
  status=1
fi
untracked="$(git ls-files --others --exclude-standard -- clients/python)"
if [[ -n "$untracked" ]]; then
  echo "FAIL: tools/codegen.py generated files that are not committed:" >&2
  echo "$untracked" >&2
  status=1
fi
if ((status)); then
  echo "Run 'make gen' and commit clients/python." >&2
  exit 1
fi
echo "generated code: clients/python is up to date with proto/"

bash tools/buf_check.sh generate
