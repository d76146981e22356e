#!/usr/bin/env bash
# Generates docs/ with tfplugindocs from templates/, examples/ and the provider schema, offline: it
# uses the terraform on PATH and downloads nothing.
#   scripts/docs.sh generate    rewrite docs/
#   scripts/docs.sh check       fail when docs/ differs from a fresh generation
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1
command -v terraform >/dev/null || { echo "docs: terraform is not on PATH" >&2; exit 1; }

case "${1:-generate}" in
generate)
  go tool tfplugindocs generate --provider-name hypeman
  ;;
check)
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  go tool tfplugindocs validate --provider-name hypeman >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  go tool tfplugindocs generate --provider-name hypeman >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  # Anything generation changed, added or removed against the commit shows in git status.
  if [ -n "$(git status --porcelain -- docs/)" ]; then
    echo "docs: docs/ is not up to date with templates/, examples/ and the schema; run 'make docs' and commit" >&2
    git status --short -- docs/ >&2
    exit 1
  fi
  ;;
*)
  echo "usage: $0 generate|check" >&2
  exit 2
  ;;
esac
