#!/usr/bin/env bash
# A Debian bookworm base with Python 3.11 (python3, python3-venv), made with debootstrap from
# the Debian mirror, for machines that reach apt but not docker.io. As root.
set -euo pipefail
TAG="${TAG:-localhost/alfred-base:bookworm}"
ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$ROOTFS" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
tar -C "$ROOTFS" -c . | podman import --change 'CMD ["python3"]' - "$TAG"
echo "local-base-image: $TAG" >&2
