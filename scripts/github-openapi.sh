#!/usr/bin/env bash
# Fetch GitHub's published OpenAPI description of its REST API (api.github.com), which the tests
# check the fake GitHub server's answers and our client's requests against.
#
#   scripts/github-openapi.sh           fetch it if missing, print its path
#
# It comes from the npm package @octokit/openapi (generated from github/rest-api-description; MIT),
# pinned below and verified by npm against the registry's integrity hash. Only the one file the
# tests read is kept, in a cache outside the repository (reused when present).
set -euo pipefail
VERSION=23.0.2
CACHE=${SONIC_GITHUB_OPENAPI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sonic-gitops/github-openapi}
TARGET=$CACHE/api.github.com-$VERSION.json
if [ ! -s "$TARGET" ]; then
  command -v npm >/dev/null 2>&1 || { echo "github-openapi: npm is required (apt-get install npm)" >&2; exit 2; }
  mkdir -p "$CACHE"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@octokit/openapi@$VERSION" >/dev/null)
  tar -xzf "$work"/octokit-openapi-"$VERSION".tgz -C "$work" package/generated/api.github.com.json
  mv "$work"/package/generated/api.github.com.json "$TARGET.tmp"
  mv "$TARGET.tmp" "$TARGET"   # atomic: a half-written file is never taken for the description
fi
echo "$TARGET"
