#!/usr/bin/env bash
# buf checks on proto/ (config: buf.yaml, buf.gen.yaml; buf from package-lock.json):
#   tools/buf_check.sh lint       buf lint (STANDARD, exceptions commented in buf.yaml)
#   tools/buf_check.sh breaking   buf breaking against the proto/ before the latest change
#   tools/buf_check.sh generate   buf generate gives byte-identical clients/python stubs and
#                                 gateway/openapi.json
#
# breaking, which baseline: the parent of the most recent commit that changed proto/, so
# the latest contract change is always the one checked, even when commits that do not touch
# proto/ came after it. With uncommitted changes under proto/ the baseline is HEAD. Set
# BUF_BREAKING_AGAINST=<git rev> to pick another one (e.g. the last release tag). No
# baseline (no earlier commit, or it had no proto/): skipped with the reason printed.
set -euo pipefail
# shellcheck source=tools/buf_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/buf_env.sh"
cd "$REPO_ROOT"

cmd_lint() {
  "$BUF" lint
  echo "buf lint: clean"
}

describe() { git log -1 --format='%h %s' "$1"; }

choose_baseline() {
  if [[ -n "${BUF_BREAKING_AGAINST:-}" ]]; then
    BASE="$(git rev-parse --verify "${BUF_BREAKING_AGAINST}^{commit}")"
    REASON="BUF_BREAKING_AGAINST=${BUF_BREAKING_AGAINST}"
    return 0
  fi
  if [[ -n "$(git status --porcelain --untracked-files=all -- proto)" ]]; then
    BASE="$(git rev-parse HEAD)"
    REASON="uncommitted changes under proto/, so against HEAD"
    return 0
  fi
  local last
  last="$(git log -1 --format=%H -- proto)"
  if [[ -z "$last" ]]; then
    echo "SKIP: buf breaking: no commit has touched proto/ yet, nothing to compare with"
    return 1
  fi
  if ! BASE="$(git rev-parse --verify --quiet "${last}^1")"; then
    if [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
      echo "FAIL: buf breaking: shallow clone, the parent of $(describe "$last") is missing;" \
        "clone with full history" >&2
      exit 1
    fi
    echo "SKIP: buf breaking: proto/ was last changed by the root commit" \
      "($(describe "$last")), so there is no earlier contract to compare with"
    return 1
  fi
  REASON="latest commit changing proto/ is $(describe "$last"), so against its parent"
}

cmd_breaking() {
  choose_baseline || return 0
  if [[ -z "$(git ls-tree -d "$BASE" proto)" ]]; then
    echo "SKIP: buf breaking: baseline $(describe "$BASE") has no proto/ directory" \
      "(the contract is new), nothing to compare with"
    return 0
  fi
  echo "buf breaking: $REASON: $(describe "$BASE")"
  # The baseline is laid out as a workspace like ours: its proto/ from git, plus this tree's
  # buf.yaml (the baseline may have none, or an older layout) and build/third_party (never
  # in git), so its google/api imports resolve without the Buf Schema Registry. Which rules
  # apply comes from the current buf.yaml in any case.
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  git archive "$BASE" proto | tar -x -C "$tmp"
  cp buf.yaml "$tmp/"
  mkdir -p "$tmp/build"
  cp -R build/third_party "$tmp/build/"
  "$BUF" breaking --against "$tmp"
  echo "buf breaking: no breaking changes"
}

cmd_generate() {
  local tmp rc=0 top
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  "$BUF" generate -o "$tmp"
  if [[ ! -d "$tmp/clients/python" ]]; then
    echo "FAIL: buf generate wrote nothing under clients/python" >&2
    return 1
  fi
  # Every top-level package buf generates must match the committed one exactly, file set
  # included (hand-written code elsewhere in clients/python is not compared).
  for top in "$tmp"/clients/python/*; do
    diff -r -x __pycache__ "$top" "clients/python/$(basename "$top")" || rc=1
  done
  # The OpenAPI document (gateway/openapi.json) too.
  diff "$tmp/gateway/openapi.json" gateway/openapi.json | head -n 50 || true
  cmp -s "$tmp/gateway/openapi.json" gateway/openapi.json || rc=1
  if ((rc)); then
    echo "FAIL: buf generate (buf.gen.yaml) differs from tools/codegen.py's output" >&2
    return 1
  fi
  echo "buf generate: identical to the committed clients/python and gateway/openapi.json"
}

case "${1:-}" in
  lint | breaking | generate) ;;
  *)
    echo "usage: $0 lint|breaking|generate" >&2
    exit 2
    ;;
esac
ensure_buf || exit 0
ensure_third_party
"cmd_$1"
