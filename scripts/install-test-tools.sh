#!/usr/bin/env bash
# Installs the system tools the integration tests use: a container runtime (podman + runc),
# debootstrap for the locally made base image, BitTorrent clients and a tracker (opentracker),
# a network sandbox, and headless Chromium for the catalog site's test (tests/test_catalog_site.py,
# which fails, even locally, when chromium is missing), and the Argo Workflows schema package
# pinned in tests/argo/package-lock.json, with the npm that nodejs brings (tests/test_argo.py).
# Needs root and apt-get; elsewhere it says what is missing and leaves the decision to the
# tests (which fail in CI and skip locally when a tool is absent).
set -euo pipefail
pkgs=(podman buildah runc fuse-overlayfs uidmap slirp4netns debootstrap
      aria2 transmission-cli transmission-daemon opentracker bubblewrap git nodejs chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
argo_schema() {  # the npm registry, through the lock: exactly the versions in package-lock.json
  local dir; dir="$(dirname "$0")/../tests/argo"
  if [ ! -d "$dir/node_modules/@kubernetes-models/argo-workflows" ] && command -v npm >/dev/null; then
    npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  argo_schema
  echo "test tools: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test tools: cannot install ${missing[*]} (needs root and apt-get); tests needing them skip locally and fail in CI" >&2
  exit 0
fi
echo "test tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
argo_schema
