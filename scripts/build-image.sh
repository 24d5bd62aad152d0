#!/usr/bin/env bash
# `make image`: build the Dockerfile with podman (or buildah) and check the result runs as a
# non-root user with the runtime requirements only. IMAGE names the result; PYTHON_IMAGE
# replaces the base (a mirror, or a local image where docker.io is out of reach).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-alfred-whatsapp-bridge:dev}"
say() { echo "image: $*" >&2; }

if command -v podman >/dev/null; then
    BUILD=(podman build)
    RUN=(podman run --rm)
elif command -v buildah >/dev/null; then
    BUILD=(buildah bud)
    RUN=()
else
    say "neither podman nor buildah is installed: sudo apt-get install podman (or buildah)"
    exit 1
fi
ARGS=()
[[ -n "${PYTHON_IMAGE:-}" ]] && ARGS+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
if [[ "${BUILD[0]}" == podman && -z "${NO_WHEELHOUSE:-}" ]]; then
    # The wheels are fetched here, with this machine's pip and network, and mounted into the
    # build: a build container may not reach PyPI (a proxy's certificate, no network at all).
    WHEELS="$PWD/var/wheelhouse"
    mkdir -p "$WHEELS"
    python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version "${WHEEL_PYTHON_VERSION:-3.11.2}" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform linux_x86_64 --implementation cp \
        -r requirements.txt -d "$WHEELS"
    # pip download evaluates markers on this interpreter: add what an older 3.11 needs
    # (Debian bookworm's 3.11.2; redis-py wants async-timeout below 3.11.3).
    python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version "${WHEEL_PYTHON_VERSION:-3.11.2}" --implementation cp \
        --platform manylinux2014_x86_64 "async-timeout>=4.0.3" -d "$WHEELS"
    ARGS+=(--volume "$WHEELS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_NO_INDEX=1)
    # This machine's kernel refuses the OCI runtime's cgroups: chroot isolation needs none.
    ARGS+=(--isolation=chroot)
fi
if ! "${BUILD[@]}" "${ARGS[@]}" -t "$IMAGE" -f Dockerfile . ; then
    say "the build failed. If the base image could not be pulled (no access to docker.io),"
    say "build a local base and point PYTHON_IMAGE at it:"
    say "  bash scripts/local-base-image.sh && PYTHON_IMAGE=localhost/alfred-base:bookworm make image"
    exit 1
fi
# Non-root, the runtime requirements only (no test or load tools), and the app imports.
CHECK='test "$(id -u)" != 0 || test -n "$AS_ROOT_CHROOT"; ! python -c "import pytest" 2>/dev/null && ! python -c "import locust" 2>/dev/null && python -c "import alfred.celery_app, wsgi" && echo "image: runtime requirements only; the app imports"'
if [[ ${#RUN[@]} -gt 0 ]] && "${RUN[@]}" "$IMAGE" sh -c "$CHECK"; then
    :
elif [[ "${BUILD[0]}" == podman && "$(id -u)" == 0 ]]; then
    # No OCI runtime here (cgroups, rlimits refused): look inside the image instead.
    user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
    [[ -n "$user" && "$user" != root && "$user" != 0 ]] || { say "the image runs as root"; exit 1; }
    root="$(podman image mount "$IMAGE")"
    trap 'podman image umount "$IMAGE" >/dev/null' EXIT
    AS_ROOT_CHROOT=1 chroot "$root" /usr/bin/env -i AS_ROOT_CHROOT=1 PATH=/opt/venv/bin:/usr/bin:/bin \
        PYTHONPATH=/app sh -c "cd /app && $CHECK"
    say "runs as user $user"
fi
say "built $IMAGE"
