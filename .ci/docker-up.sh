#!/usr/bin/env bash
# Bring up Docker for the `docker` sandbox backend and its tests, offline.
#
# What it does, each step skipped when already done (so it is safe to re-run):
#   1. installs docker.io and debootstrap with apt when `dockerd`/`debootstrap`
#      are missing (a Debian/Ubuntu apt mirror must be reachable; a container
#      registry need not be);
#   2. starts `dockerd` in the background when `docker info` fails, logging to
#      $DOCKERD_LOG, and waits until it answers;
#   3. builds the sandbox image with sandboxes/docker/build_image.sh when it is
#      not present (debootstrap + `docker import`, no registry pulls).
#
# Run as root on a fresh Debian machine:  .ci/docker-up.sh
# Environment: AGENT_ENVS_DOCKER_IMAGE (default agent-envs-sandbox:latest),
#              DOCKERD_LOG (default /var/log/agent-envs-dockerd.log),
#              DOCKER_WAIT_S (default 60).
set -euo pipefail

IMAGE="${AGENT_ENVS_DOCKER_IMAGE:-agent-envs-sandbox:latest}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/agent-envs-dockerd.log}"
WAIT_S="${DOCKER_WAIT_S:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

say() { echo "[docker-up] $*"; }
die() { echo "[docker-up] error: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
    command -v sudo >/dev/null || die "not root and no sudo; run this script as root"
else
    SUDO=
fi

# 1. packages ---------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# debootstrap verifies the bookworm Release file with this keyring (absent on Ubuntu).
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Lock timeout: other jobs on a shared CI box may be running apt already.
    APT_LOG="$(mktemp /tmp/agent-envs-apt.XXXXXX.log)"
    $SUDO apt-get -o DPkg::Lock::Timeout=300 -q update >"$APT_LOG" 2>&1 \
        || die "apt-get update failed; check the apt mirror in /etc/apt/sources.list*:
$(tail -n 20 "$APT_LOG")"
    $SUDO apt-get -o DPkg::Lock::Timeout=300 -q install -y --no-install-recommends \
        "${missing[@]}" >"$APT_LOG" 2>&1 \
        || die "apt-get install ${missing[*]} failed:
$(tail -n 20 "$APT_LOG")"
    rm -f "$APT_LOG"
else
    say "docker.io, debootstrap and the Debian keyring already installed"
fi

# 2. daemon -----------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    say "dockerd already running"
else
    # No pgrep: procps is not on a minimal Debian.
    if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
        say "starting dockerd (log: $DOCKERD_LOG)"
        # setsid + nohup: the daemon must outlive this script and its terminal.
        $SUDO setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
        started=$!
    else
        say "dockerd process exists but is not answering yet; waiting"
    fi
    for ((i = 0; i < WAIT_S * 2; i++)); do
        docker info >/dev/null 2>&1 && break
        # A daemon that exited will not come up: stop waiting.
        if [ -n "${started:-}" ] && ! kill -0 "$started" 2>/dev/null; then break; fi
        sleep 0.5
    done
    docker info >/dev/null 2>&1 \
        || die "dockerd did not come up (waited up to ${WAIT_S}s); last log lines:
$(tail -n 8 "$DOCKERD_LOG" 2>/dev/null)"
    say "dockerd is up"
fi

# 3. image ------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE already present"
else
    say "building image $IMAGE offline (debootstrap, about a minute)"
    "$ROOT/sandboxes/docker/build_image.sh" "$IMAGE"
fi
say "ready: docker $(docker version --format '{{.Server.Version}}'), image $IMAGE"
