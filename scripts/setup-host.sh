#!/usr/bin/env bash
# Prepare this host for labkit: a Docker engine, debootstrap, the .venv, the images.
# Idempotent and quick when everything is already there; runs from any cwd.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf 'setup-host: %s\n' "$*"; }

# Whichever client is there: the docker CLI, the Python SDK, or curl on the default socket.
engine_answers() {
    timeout 10 docker info >/dev/null 2>&1 && return 0
    timeout 10 python3 -c 'import docker; docker.from_env().ping()' >/dev/null 2>&1 && return 0
    [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] \
        && timeout 10 curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
}

is_root_debian() { [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; }

# apt-get update only when the install cannot proceed without it (empty or stale lists).
apt_install() {
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

# --- (a) Docker engine, debootstrap (needed only when the base image cannot be pulled), graphviz
missing=()
engine_answers || command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v dot >/dev/null || missing+=(graphviz)  # `labkit graph --format svg|png` lays out with it
# The multi-host sandbox: network namespaces (ip), nsenter/unshare for its dockerds.
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ] && is_root_debian; then
    apt_install "${missing[@]}"
fi

if engine_answers; then
    say "docker engine: answers"
elif [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    say "starting dockerd (log: /var/log/labkit-dockerd.log)"
    nohup dockerd >>/var/log/labkit-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 60); do
        engine_answers && break
        sleep 1
    done
    engine_answers || { say "dockerd did not answer within 60 s: see /var/log/labkit-dockerd.log"; exit 1; }
    say "docker engine: started"
else
    say "no Docker engine answers. Install and start one, e.g. on Debian/Ubuntu (as root):"
    say "  apt-get install docker.io debootstrap && dockerd &"
    say "or Docker Engine / Docker Desktop elsewhere, then run this script again."
    exit 1
fi
# Kernel modules the labs use; built in on some kernels, absent on others (then
# the features that need them are skipped with the reason, see `labkit doctor`).
if [ "$(id -u)" = 0 ] && command -v modprobe >/dev/null; then
    for module in br_netfilter vxlan tun ip_vs sch_netem sch_tbf sch_htb; do
        modprobe "$module" 2>/dev/null || true
    done
fi
# A lab network must carry pod addresses (host-gw, bgp) and routed traffic
# (router nodes) like one L2 segment. With br_netfilter loaded, Docker's
# isolation rules for internal networks drop frames outside the network's
# subnet; accept bridged frames first (a bridged frame never leaves its bridge,
# so networks stay internal). `labkit doctor` shows it as l2-underlay.
if [ "$(id -u)" = 0 ] && command -v iptables >/dev/null && iptables -S DOCKER-USER >/dev/null 2>&1; then
    rule=(-m physdev --physdev-is-bridged -m comment --comment "labkit: a lab network is one L2 segment" -j ACCEPT)
    iptables -C DOCKER-USER "${rule[@]}" 2>/dev/null || iptables -I DOCKER-USER "${rule[@]}"
fi
command -v debootstrap >/dev/null \
    || say "warning: no debootstrap; it is needed only if debian:bookworm-slim cannot be pulled"

# --- (b) the virtualenv; reinstall only when pyproject.toml changed since the last install
[ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
stamp=.venv/.labkit-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing labkit into .venv (pip install -e '.[dev]')"
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" >"$stamp"
else
    say ".venv: up to date"
fi
# An editable install leaves labkit's own modules uncompiled: every `labkit`
# process (and test) would compile them again where PYTHONDONTWRITEBYTECODE is
# set (0.2 s a start). Compiled once here; a module edited later is recompiled.
.venv/bin/python -m compileall -q labkit >/dev/null

# --- (c) the images (content-addressed: a no-op when nothing changed)
say "images: labkit images build"
.venv/bin/labkit images build
say "ready"
