#!/usr/bin/env bash
# Build the real Kubernetes control plane and controllers the `controlplane` test tier runs,
# from their published Go modules at the versions pinned in tools/controlplane/*/go.mod.
#
#   scripts/controlplane-tools.sh             build what is missing, print the bin directory
#   scripts/controlplane-tools.sh --bindir    print the bin directory only (no build)
#   scripts/controlplane-tools.sh --list      one line per component: name, module@version, state
#
# Each component is built into a cache outside the repository, keyed by its pinned module version
# and a hash of its go.mod/go.sum and the Go version, so a warm machine rebuilds nothing and a
# version bump builds next to the old one. Sources come only from the Go module proxy (GOFLAGS
# -mod=mod is not used: go.sum is committed and verified); nothing else is downloaded.
# A component that fails to build is reported and skipped; the tests that need it then fail in CI
# with that name (they never pass silently).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${SONIC_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sonic-gitops/controlplane}
export GOFLAGS=${GOFLAGS:-}
export CGO_ENABLED=0   # static binaries; etcd, Kubernetes and the controllers ship this way

# name | tools/controlplane dir | module | binaries to build, as binary=package (space separated)
# | extra -ldflags (what upstream's release build stamps in; the key covers this line too)
K8S=k8s.io/kubernetes/cmd
k8s_version_ldflags() { # kube-apiserver reports this version in /version (site doctor checks it)
  local v=$1 major minor pkg out=""
  major=${v#v}; major=${major%%.*}; minor=${v#v"$major".}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$out"
}
COMPONENTS=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|etcd=go.etcd.io/etcd/server/v3"
  "kubernetes|kubernetes|k8s.io/kubernetes|kube-apiserver=$K8S/kube-apiserver kube-controller-manager=$K8S/kube-controller-manager kube-scheduler=$K8S/kube-scheduler|k8s-version"
  "kwok|kwok|sigs.k8s.io/kwok|kwok=sigs.k8s.io/kwok/cmd/kwok"
  "keda|keda|github.com/kedacore/keda/v2|keda-operator=github.com/kedacore/keda/v2/cmd/operator keda-adapter=github.com/kedacore/keda/v2/cmd/adapter"
  "argo-workflows|argo-workflows|github.com/argoproj/argo-workflows/v4|workflow-controller=github.com/argoproj/argo-workflows/v4/cmd/workflow-controller"
)

module_version() { # dir module -> the version go.mod requires
  awk -v m="$2" '$1 == m || ($1 == "require" && $2 == m) { print $NF; exit }' "$ROOT/tools/controlplane/$1/go.mod"
}

component_key() { # dir module -> cache key: version plus a hash of what decides the binaries
  local v h
  v=$(module_version "$1" "$2")
  h=$( { go env GOVERSION GOOS GOARCH; echo "$CGO_ENABLED"; ldflags "$1" "$2";
         cat "$ROOT/tools/controlplane/$1/go.mod" "$ROOT/tools/controlplane/$1/go.sum"; } | sha256sum | cut -c1-12)
  echo "$v-$h"
}

ldflags() { # dir module -> the -ldflags of its build
  local entry name dir mod pkgs extra flags="-s -w"
  for entry in "${COMPONENTS[@]}"; do
    IFS='|' read -r name dir mod pkgs extra <<<"$entry"
    if [ "$dir" = "$1" ] && [ "$extra" = k8s-version ]; then
      flags+=$(k8s_version_ldflags "$(module_version "$1" "$2")")
    fi
  done
  echo "$flags"
}

bindir() { # a directory of symlinks to every built binary, keyed by all components' keys
  local keys="" entry name dir mod pkgs
  for entry in "${COMPONENTS[@]}"; do
    IFS='|' read -r name dir mod pkgs _ <<<"$entry"
    keys+="$name-$(component_key "$dir" "$mod");"
  done
  echo "$CACHE/bin-$(echo "$keys" | sha256sum | cut -c1-12)"
}

build_one() { # name dir module pkgs -> 0 when the component's binaries are in the cache
  local name=$1 dir=$2 mod=$3 pkgs=$4 key out start
  key=$(component_key "$dir" "$mod")
  out="$CACHE/$name-$key"
  if [ -f "$out/.complete" ]; then
    return 0
  fi
  start=$(date +%s)
  echo "controlplane-tools: building $name ($mod@$(module_version "$dir" "$mod")) into $out" >&2
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp/bin"
  local ok=1 target
  for target in $pkgs; do  # one `go build` per binary: they share Go's build cache
    go -C "$ROOT/tools/controlplane/$dir" build -trimpath -ldflags "$(ldflags "$dir" "$mod")" -o "$out.tmp/bin/${target%%=*}" "${target#*=}" \
      >>"$out.tmp/build.log" 2>&1 || { ok=0; break; }
  done
  if [ $ok = 1 ]; then
    echo "$(( $(date +%s) - start ))" >"$out.tmp/build-seconds"
    touch "$out.tmp/.complete"
    rm -rf "$out"
    mv "$out.tmp" "$out"   # publish atomically: an interrupted build leaves no half cache entry
    echo "controlplane-tools: built $name in $(cat "$out/build-seconds") s" >&2
  else
    echo "controlplane-tools: FAILED to build $name; last lines of $out.tmp/build.log:" >&2
    tail -n 20 "$out.tmp/build.log" >&2
    return 1
  fi
}

list() {
  local entry name dir mod pkgs key
  for entry in "${COMPONENTS[@]}"; do
    IFS='|' read -r name dir mod pkgs _ <<<"$entry"
    key=$(component_key "$dir" "$mod")
    if [ -f "$CACHE/$name-$key/.complete" ]; then
      echo "$name $mod@$(module_version "$dir" "$mod") built $(cat "$CACHE/$name-$key/build-seconds") s"
    else
      echo "$name $mod@$(module_version "$dir" "$mod") missing"
    fi
  done
}

link_all() { # (re)make the symlink directory from whatever is built
  local bin entry name dir mod pkgs f
  bin=$(bindir)
  rm -rf "$bin.tmp"
  mkdir -p "$bin.tmp"
  for entry in "${COMPONENTS[@]}"; do
    IFS='|' read -r name dir mod pkgs _ <<<"$entry"
    for f in "$CACHE/$name-$(component_key "$dir" "$mod")"/bin/*; do
      [ -e "$f" ] && ln -s "$f" "$bin.tmp/$(basename "$f")"
    done
  done
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
  echo "$bin"
}

case "${1:-}" in
  --bindir) bindir; exit 0 ;;
  --list) list; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--bindir|--list]" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "controlplane-tools: Go is not installed (need Go >= 1.26)" >&2; exit 2; }
mkdir -p "$CACHE"
failed=()
for entry in "${COMPONENTS[@]}"; do
  IFS='|' read -r name dir mod pkgs _ <<<"$entry"
  build_one "$name" "$dir" "$mod" "$pkgs" || failed+=("$name")
done
link_all
if [ ${#failed[@]} -gt 0 ]; then
  echo "controlplane-tools: not built: ${failed[*]}" >&2
  exit 1
fi
