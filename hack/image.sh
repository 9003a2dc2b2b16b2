#!/usr/bin/env bash
# Builds OCI images without a registry and without a container engine: the
# files are laid out in a rootfs by hand and packed with umoci (Debian's),
# then written as a docker-archive by skopeo so `ctr images import` and
# `docker load` both take them.
#
#   hack/image.sh edge-quota   [--out FILE]   the project's image (release build)
#   hack/image.sh node-pause   --out FILE     the edge node's pod sandbox image
#   hack/image.sh node-toolbox --out FILE     busybox and curl: the volume
#                                             provisioner's helper pods, test clients
#   hack/image.sh node-postgres --out FILE    Debian's PostgreSQL server, for the
#                                             tests of several replicas in pods
#
# The edge-quota image has the layout of the repository's Dockerfile (its
# final stage is distroless cc-debian12:nonroot): the two binaries in
# /usr/local/bin, glibc and libgcc from this Debian 12 machine, the CA bundle,
# /etc/passwd with nonroot (65532), /data owned by it, and the Dockerfile's
# USER, ENTRYPOINT, ENV, EXPOSE and VOLUME. A test compares the two.
#
# The LAST line printed is the image reference. The OCI layout stays next to
# the archive (FILE without .tar + .oci) for inspection.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
CACHE_ROOT="${EDGE_QUOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-quota}"

log() { echo "image: $*" >&2; }

kind="${1:-}"
shift || true
OUT=""
while (($#)); do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

for tool in umoci skopeo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "installing $tool (Debian package)"
        apt_install "$tool" >&2
    fi
done

# new_image NAME: an empty OCI layout and an unpacked bundle in $WORK.
new_image() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/edge-quota-image.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    umoci init --layout "$WORK/oci"
    umoci new --image "$WORK/oci:$1"
    umoci unpack --image "$WORK/oci:$1" "$WORK/bundle" >/dev/null
    ROOTFS="$WORK/bundle/rootfs"
}

# finish_image NAME REF CONFIG_ARGS...: repack, configure, write the archive.
finish_image() {
    local name="$1" ref="$2"
    shift 2
    # Reproducible-ish: every file gets the same time.
    find "$ROOTFS" -exec touch -h -d @0 {} +
    umoci repack --image "$WORK/oci:$name" "$WORK/bundle"
    umoci config --image "$WORK/oci:$name" --architecture amd64 --os linux \
        --created 1970-01-01T00:00:00Z --history.created 1970-01-01T00:00:00Z "$@"
    umoci gc --layout "$WORK/oci"
    mkdir -p "$(dirname "$OUT")"
    rm -f "$OUT.tmp"
    skopeo copy --quiet "oci:$WORK/oci:$name" "docker-archive:$OUT.tmp:$ref"
    mv "$OUT.tmp" "$OUT"
    rm -rf "${OUT%.tar}.oci"
    cp -r "$WORK/oci" "${OUT%.tar}.oci"
    log "$ref -> $OUT ($(du -h "$OUT" | cut -f1))"
}

# The files of /etc a distroless nonroot image has.
write_etc() {
    mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/home/nonroot"
    chmod 1777 "$ROOTFS/tmp"
    cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
    echo "hosts: files dns" >"$ROOTFS/etc/nsswitch.conf"
    chown 65532:65532 "$ROOTFS/home/nonroot"
}

# copy_libs BINARY...: the shared libraries the binaries load, at their paths.
copy_libs() {
    local lib
    # ldd names each file first ("FILE:") when given several; skip those.
    for lib in $(ldd "$@" | awk '$1 ~ /:$/ {next} $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
        mkdir -p "$ROOTFS$(dirname "$lib")"
        cp -L "$lib" "$ROOTFS$lib"
    done
}

case "$kind" in
    edge-quota)
        version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/edge-quota/Chart.yaml")"
        rev="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
        git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev-dirty"
        ref="${EDGE_QUOTA_IMAGE_REPOSITORY:-localhost/edge-quota}:$version-$rev"
        [[ -n "$OUT" ]] || OUT="$CACHE_ROOT/images/edge-quota.tar"
        target="${CARGO_TARGET_DIR:-$ROOT/target}"
        log "building the release binaries"
        (
            # Run from a test, the package variables cargo sets for it would
            # make build scripts that track them (ring's) rebuild everything.
            for var in $(compgen -e | grep -E '^CARGO_(MANIFEST|PKG|CRATE|PRIMARY|TARGET_TMPDIR|BIN)'); do
                unset "$var"
            done
            cd "$ROOT" && ${CARGO:-cargo} build --release --locked --bin quota-service --bin quota-operator >&2
        )
        new_image edge-quota
        mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/ssl/certs" "$ROOTFS/data"
        install -m 0755 "$target/release/quota-service" "$target/release/quota-operator" "$ROOTFS/usr/local/bin/"
        copy_libs "$ROOTFS/usr/local/bin/quota-service" "$ROOTFS/usr/local/bin/quota-operator"
        cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
        write_etc
        chown 65532:65532 "$ROOTFS/data"
        finish_image edge-quota "$ref" \
            --config.user 65532:65532 \
            --config.entrypoint /usr/local/bin/quota-service \
            --config.env QUOTA_HOST=0.0.0.0 --config.env QUOTA_DATA_DIR=/data \
            --config.exposedports 8183/tcp --config.exposedports 8081/tcp \
            --config.volume /data \
            --config.label "org.opencontainers.image.source=https://github.com/edge-quota/edge-quota" \
            --config.label "org.opencontainers.image.version=$version" \
            --config.label "org.opencontainers.image.revision=$rev"
        ;;
    node-pause)
        [[ -n "$OUT" ]] || { log "--out is required"; exit 2; }
        ref="localhost/edge-node/pause:3.10"
        new_image pause
        gcc -Os -static -Wall -Wextra -o "$ROOTFS/pause" "$HERE/edge/pause.c"
        finish_image pause "$ref" --config.user 65535:65535 --config.entrypoint /pause
        ;;
    node-toolbox)
        [[ -n "$OUT" ]] || { log "--out is required"; exit 2; }
        ref="localhost/edge-node/toolbox:1"
        new_image toolbox
        mkdir -p "$ROOTFS/bin" "$ROOTFS/tmp" "$ROOTFS/etc/ssl/certs"
        chmod 1777 "$ROOTFS/tmp"
        cp /bin/busybox "$ROOTFS/bin/busybox"
        for applet in $("$ROOTFS/bin/busybox" --list); do
            [[ -e "$ROOTFS/bin/$applet" ]] || ln -s busybox "$ROOTFS/bin/$applet"
        done
        # busybox's wget crashes in pods here; curl is the HTTP client.
        rm -f "$ROOTFS/bin/wget"
        cp /usr/bin/curl "$ROOTFS/bin/curl"
        copy_libs /usr/bin/curl
        cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
        write_etc
        finish_image toolbox "$ref" --config.env PATH=/bin --config.cmd /bin/sh
        ;;
    node-postgres)
        [[ -n "$OUT" ]] || { log "--out is required"; exit 2; }
        bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
        if [[ -z "$bin" ]]; then
            log "installing Debian's postgresql package"
            apt_install postgresql >&2
            bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
        fi
        pg="$(dirname "$bin")"
        major="$(basename "$pg")"
        ref="localhost/edge-node/postgres:$major"
        new_image postgres
        mkdir -p "$ROOTFS$pg/bin" "$ROOTFS/usr/share/postgresql" "$ROOTFS/bin" \
            "$ROOTFS/var/lib/postgresql" "$ROOTFS/usr/local/bin"
        cp "$bin/postgres" "$bin/initdb" "$bin/pg_isready" "$ROOTFS$pg/bin/"
        cp -r "$pg/lib" "$ROOTFS$pg/lib"
        # The JIT (and LLVM behind it, a few hundred MB) stays out: jit=off.
        rm -rf "$ROOTFS$pg"/lib/llvmjit* "$ROOTFS$pg/lib/bitcode"
        cp -r "/usr/share/postgresql/$major" "$ROOTFS/usr/share/postgresql/"
        cp -r /usr/share/zoneinfo "$ROOTFS/usr/share/zoneinfo"
        copy_libs "$ROOTFS$pg/bin/postgres" "$ROOTFS$pg/bin/initdb" "$ROOTFS$pg/bin/pg_isready" "$ROOTFS$pg"/lib/*.so
        cp /bin/busybox "$ROOTFS/bin/busybox"
        for applet in sh cat echo mkdir rm; do ln -s busybox "$ROOTFS/bin/$applet"; done
        write_etc
        echo "postgres:x:999:999:postgres:/var/lib/postgresql:/sbin/nologin" >>"$ROOTFS/etc/passwd"
        echo "postgres:x:999:" >>"$ROOTFS/etc/group"
        chown 999:999 "$ROOTFS/var/lib/postgresql"
        # First start: a cluster owned by POSTGRES_USER with POSTGRES_PASSWORD
        # (scram) and the database POSTGRES_DB; then the server on the pod's
        # network.
        sed "s|@PGBIN@|$bin|" "$HERE/edge/postgres-entrypoint.sh" >"$ROOTFS/usr/local/bin/postgres-entrypoint"
        chmod 0755 "$ROOTFS/usr/local/bin/postgres-entrypoint"
        finish_image postgres "$ref" --config.user 999:999 \
            --config.entrypoint /usr/local/bin/postgres-entrypoint \
            --config.env TZ=UTC --config.env PGDATA=/var/lib/postgresql/data \
            --config.exposedports 5432/tcp
        ;;
    *)
        echo "usage: $0 edge-quota|node-pause|node-toolbox|node-postgres [--out FILE]" >&2
        exit 2
        ;;
esac

echo "$ref"
