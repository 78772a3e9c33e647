#!/bin/sh
# Deploy-time step of the provided runtime (the [build] of runtime.toml): put the Runtime API
# adapter, fnhost-runtime-api, into the build directory, where every worker of the function runs
# it from (the build directory is visible, read-only, inside a worker's namespace).
#
#   build.sh GO GO_MODULE_DIR BUILD_DIR [CACHE_DIR]
#   build.sh --prepare GO GO_MODULE_DIR CACHE_DIR
#
# --prepare runs once per daemon as the daemon's own user, on fnhost's own source and the Go
# toolchain only: it compiles the adapter into CACHE_DIR/fnhost-runtime-api (Go's build cache in
# CACHE_DIR/build makes a daemon restart a cache hit). A build then copies that executable. A
# build without it (no CACHE_DIR: a daemon that is not root, or a failed prepare) compiles the
# adapter itself, with the caller's Go caches or private ones under TMPDIR.
set -eu

fail() {
	printf 'fnhost: %s\n' "$*" >&2
	exit 1
}

# Offline and reproducible whatever the caller's environment says (as ../go/build.sh): the
# adapter uses the standard library only.
export GOFLAGS='-mod=mod -buildvcs=false' GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOENV=off

compile() { # GO MODULE_DIR OUT
	(cd "$2" && "$1" build -trimpath -ldflags='-s -w' -o "$3" ./cmd/fnhost-runtime-api) ||
		fail "could not build the Runtime API adapter from $2/cmd/fnhost-runtime-api"
}

if [ "${1:-}" = --prepare ]; then
	[ $# -eq 4 ] || fail "usage: build.sh --prepare GO GO_MODULE_DIR CACHE_DIR"
	go=$2 module=$3 cache_dir=$4
	export GOCACHE="$cache_dir/build" GOMODCACHE="$cache_dir/mod"
	mkdir -p "$GOCACHE"
	# Built beside, then renamed: a build copying it meanwhile never sees half a file.
	compile "$go" "$module" "$cache_dir/fnhost-runtime-api.new"
	chmod 755 "$cache_dir/fnhost-runtime-api.new"
	mv -f "$cache_dir/fnhost-runtime-api.new" "$cache_dir/fnhost-runtime-api"
	exit 0
fi

if [ $# -ne 3 ] && [ $# -ne 4 ]; then
	echo "usage: build.sh GO GO_MODULE_DIR BUILD_DIR [CACHE_DIR]" >&2
	exit 2
fi
go=$1 module=$2 build_dir=$3 cache_dir=${4:-}
out=$build_dir/fnhost-runtime-api

if [ -n "$cache_dir" ] && [ -f "$cache_dir/fnhost-runtime-api" ] && [ -x "$cache_dir/fnhost-runtime-api" ]; then
	cp "$cache_dir/fnhost-runtime-api" "$out"
	chmod 755 "$out"
	exit 0
fi

tmp_base=${TMPDIR:-/tmp}
if [ -n "$cache_dir" ]; then
	# The function's uid, without the prepared adapter: private caches only.
	export GOCACHE="$tmp_base/go-build" GOMODCACHE="$tmp_base/go/pkg/mod" GOPATH="$tmp_base/go"
else
	gocache=$("$go" env GOCACHE 2>/dev/null || true)
	case $gocache in
	/*) mkdir -p "$gocache" 2>/dev/null && [ -w "$gocache" ] || gocache="" ;;
	*) gocache="" ;;
	esac
	if [ -z "$gocache" ]; then
		gocache=$tmp_base/fnhost-go-$(id -u)/build
		mkdir -p "$gocache"
	fi
	export GOCACHE="$gocache"
fi
compile "$go" "$module" "$out"
chmod 755 "$out"
