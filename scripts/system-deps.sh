#!/usr/bin/env bash
# The Debian packages Loam needs beside npm's: FUSE (fusermount and /dev/fuse)
# for mounts, the tools the tests drive through a mount, and Chromium for the
# dashboard's browser tests (driven by playwright-core). As root they are
# installed with apt-get; otherwise this prints the exact command and fails.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v fusermount >/dev/null 2>&1 || need+=(fuse)
ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2 ' || need+=(libfuse2)
command -v git >/dev/null 2>&1 || need+=(git)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "loam: missing Debian packages; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || { echo "loam: /dev/fuse is missing: load the fuse module (sudo modprobe fuse) or give this container the device" >&2; exit 1; }
fi
