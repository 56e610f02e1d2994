#!/usr/bin/env bash
# Build the `docker` sandbox image without a container registry.
#
#   sandboxes/docker/build_image.sh [IMAGE]      (default agent-envs-sandbox:latest)
#
# debootstrap assembles a minimal Debian bookworm root filesystem (python3 and
# python3-numpy) from an apt mirror, a non-root user `sandbox` (uid/gid 10001)
# is added, and the tree is loaded with `docker import`. Only an apt mirror is
# needed, never a registry. The zygote server is not baked in: the backend
# bind-mounts the host's copy read-only, so host and container always agree.
#
# Environment: DEBIAN_MIRROR (default: the first Debian URI in the host's apt
# sources, else http://deb.debian.org/debian), DEBIAN_SUITE (default bookworm),
# EXTRA_PACKAGES (comma-separated, added to --include).
# Users with a registry can build sandboxes/docker/Dockerfile instead.
set -euo pipefail

IMAGE="${1:-agent-envs-sandbox:latest}"
SUITE="${DEBIAN_SUITE:-bookworm}"
UID_GID=10001
INCLUDE="python3,python3-numpy${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}"

say() { echo "[build_image] $*"; }
die() { echo "[build_image] error: $*" >&2; exit 1; }

command -v debootstrap >/dev/null \
    || die "debootstrap not found; install it (apt-get install debootstrap) or run .ci/docker-up.sh"
command -v docker >/dev/null || die "docker CLI not found; run .ci/docker-up.sh"
docker info >/dev/null 2>&1 || die "dockerd is not reachable; start it (.ci/docker-up.sh)"

detect_mirror() {
    # deb822 sources first (Debian 12+), then the one-line format.
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(detect_mirror)}"

ROOTFS="$(mktemp -d /tmp/agent-envs-rootfs.XXXXXX)"
LOG="$ROOTFS.log"
trap 'rm -rf "$ROOTFS"' EXIT

say "debootstrap $SUITE from $MIRROR with $INCLUDE (log: $LOG)"
start=$(date +%s)
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >"$LOG" 2>&1 \
    || die "debootstrap failed; last log lines:
$(tail -n 20 "$LOG")"
say "root filesystem ready in $(( $(date +%s) - start ))s"

# Non-root user. /tmp/scratch is where the backend mounts a tmpfs.
echo "sandbox:x:$UID_GID:$UID_GID:agent-envs sandbox:/tmp/scratch:/usr/sbin/nologin" \
    >>"$ROOTFS/etc/passwd"
echo "sandbox:x:$UID_GID:" >>"$ROOTFS/etc/group"
echo "sandbox:!:19000::::::" >>"$ROOTFS/etc/shadow"
mkdir -p "$ROOTFS/tmp/scratch" "$ROOTFS/opt/agent-envs"
chmod 1777 "$ROOTFS/tmp/scratch"

# Trim what a sandbox never needs (apt caches, docs, locales): ~40% smaller.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc "$ROOTFS"/usr/share/man "$ROOTFS"/usr/share/info \
       "$ROOTFS"/usr/share/locale

say "importing into docker as $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
    --change "USER $UID_GID:$UID_GID" \
    --change "WORKDIR /tmp/scratch" \
    --change "ENV PYTHONDONTWRITEBYTECODE=1" \
    --change "ENV LANG=C.UTF-8" \
    --change "LABEL org.opencontainers.image.title=agent-envs-sandbox" \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
rm -f "$LOG"
say "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')) in $(( $(date +%s) - start ))s"
