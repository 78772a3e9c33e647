#!/bin/sh
# Deploy-time build of a Go function (the [build] step of runtime.toml):
#
#   build.sh GO RUNTIME_DIR CODE_DIR BUILD_DIR HANDLER [CACHE_DIR]
#   build.sh --prepare GO RUNTIME_DIR CACHE_DIR
#
# HANDLER names the executable; the result is BUILD_DIR/HANDLER. It is, first match wins:
#   1. CODE_DIR/HANDLER, a prebuilt executable (checked to be a Go program linked with fnhost or
#      with aws-lambda-go's lambda package, for this OS and architecture; never a symbolic link),
#      copied;
#   2. the main package in CODE_DIR/HANDLER/, CODE_DIR/cmd/HANDLER/ or CODE_DIR itself, built
#      with `go build`, offline, with the fnhost module resolved to RUNTIME_DIR.
# A program that calls fnhost.Start is the worker itself. One that calls aws-lambda-go's
# lambda.Start (github.com/aws/aws-lambda-go/lambda) talks to Lambda's Runtime API instead: it
# becomes BUILD_DIR/HANDLER.bootstrap, and BUILD_DIR/HANDLER is the Runtime API adapter
# (RUNTIME_DIR/cmd/fnhost-runtime-api), the worker that serves that API to its sibling
# HANDLER.bootstrap, so runtime.toml launches BUILD_DIR/HANDLER either way.
# CODE_DIR is never written to. With a go.mod there, the build runs in place against an edited
# copy of it (-modfile), so its relative replace directives keep working; without one, the
# sources are copied to a scratch directory and given a generated go.mod (module "function").
#
# A build is the function's own untrusted code: a root daemon runs it as the function's uid, in a
# private scratch directory (TMPDIR), and passes CACHE_DIR. Then every Go cache is private to the
# build (GOPATH, GOMODCACHE; GOENV off), except the standard library compiled by --prepare into
# CACHE_DIR/build: the daemon's own user runs that step, on nothing but the toolchain, and the
# build reads it as its GOCACHE but cannot write it, so no function can plant compiled code that
# another function's build would link. Modules other
# than fnhost come from the daemon user's module cache, read as a file:// proxy, when the
# function's uid may read it. Without CACHE_DIR (a daemon that is not root), the caller's caches
# are used. Nothing from the function runs at build time: cgo is off (a #cgo directive would run
# the C compiler, and pkg-config, with flags of the function's choosing), go build never runs
# //go:generate, and GOFLAGS, GOPROXY and GOTOOLCHAIN are pinned here.
#
# A shell script rather than a Go program: each step is a file copy or a `go` command, and
# `go run build.go` would first compile the builder (seconds with a cold build cache).
set -eu

fail() {
	printf 'fnhost: %s\n' "$*" >&2
	exit 1
}

# program_kind EXE [VERSION_INFO]: "fnhost" when EXE is linked with the fnhost module (it is the
# worker), "lambda" when with aws-lambda-go's lambda package (it needs the Runtime API adapter);
# fails for neither. fnhost wins: a program may use aws-lambda-go's events types with
# fnhost.Start. The lambda package is looked for by its functions' names, which a Go executable
# keeps (in its pclntab) even when stripped; `go version -m` names modules, not packages, and the
# module alone may be there for its events package only.
program_kind() {
	minfo=${2:-$("$go" version -m "$1" 2>&1)}
	if printf '%s\n' "$minfo" | grep -q '^[[:space:]]*dep[[:space:]][[:space:]]*fnhost[[:space:]]'; then
		echo fnhost
	elif grep -aq 'github.com/aws/aws-lambda-go/lambda\.' "$1"; then
		echo lambda
	else
		return 1
	fi
}

# place EXE KIND: EXE as BUILD_DIR/HANDLER (fnhost), or as BUILD_DIR/HANDLER.bootstrap behind the
# Runtime API adapter at BUILD_DIR/HANDLER (lambda): a copy of the one --prepare compiled, else
# compiled here from RUNTIME_DIR (the standard library only; a few seconds with the prepared
# standard library).
place() {
	dest=$out
	[ "$2" = fnhost ] || dest=$out.bootstrap
	if [ "$1" != "$dest" ]; then cp "$1" "$dest"; fi
	chmod 755 "$dest"
	[ "$2" = fnhost ] && return 0
	if [ -n "$cache_dir" ] && [ -f "$cache_dir/fnhost-runtime-api" ] && [ -x "$cache_dir/fnhost-runtime-api" ]; then
		cp "$cache_dir/fnhost-runtime-api" "$out"
	else
		(cd "$runtime_dir" && "$go" build -trimpath -ldflags='-s -w' -o "$out" ./cmd/fnhost-runtime-api) >"$scratch/adapter.log" 2>&1 || {
			cat "$scratch/adapter.log" >&2
			fail "could not build the Runtime API adapter (fnhost-runtime-api) from $runtime_dir/cmd/fnhost-runtime-api"
		}
	fi
	chmod 755 "$out"
}

# Offline and reproducible whatever the caller's environment says: dependencies come from the
# module cache or not at all (GOSUMDB=off lets go.sum be completed from that cache), no newer
# toolchain is fetched, no go.work, go env file or VCS stamping interferes, and without cgo the
# executable is static and needs no C compiler. --prepare uses the same settings, or what it
# compiles would not be what builds look up.
export GOFLAGS='-mod=mod -buildvcs=false' GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOENV=off

if [ "${1:-}" = --prepare ]; then
	[ $# -eq 4 ] || fail "usage: build.sh --prepare GO RUNTIME_DIR CACHE_DIR"
	go=$2 runtime_dir=$3 cache_dir=$4
	export GOCACHE="$cache_dir/build"
	mkdir -p "$GOCACHE"
	# The whole standard library, compiled as builds compile it (-trimpath): once per state
	# directory, then a cache hit at each daemon start.
	"$go" build -trimpath std
	# Where builds may find other modules: the daemon user's download cache, if it has one.
	env -u GOENV "$go" env GOMODCACHE >"$cache_dir/gomodcache"
	# The Runtime API adapter that aws-lambda-go programs run behind, from fnhost's own source
	# only: builds copy it. Built beside and renamed, so a build never copies half a file; if
	# this fails, builds compile it themselves (slower, nothing else).
	if (cd "$runtime_dir" && "$go" build -trimpath -ldflags='-s -w' -o "$cache_dir/fnhost-runtime-api.new" ./cmd/fnhost-runtime-api); then
		mv -f "$cache_dir/fnhost-runtime-api.new" "$cache_dir/fnhost-runtime-api"
	else
		rm -f "$cache_dir/fnhost-runtime-api" # never an adapter from older source
	fi
	exit 0
fi

if [ $# -ne 5 ] && [ $# -ne 6 ]; then
	echo "usage: build.sh GO RUNTIME_DIR CODE_DIR BUILD_DIR HANDLER [CACHE_DIR]" >&2
	exit 2
fi
go=$1 runtime_dir=$2 code_dir=$3 build_dir=$4 handler=$5 cache_dir=${6:-}
# The build changes directory: relative paths (a build run by hand) are made absolute first.
for var in runtime_dir code_dir build_dir; do
	eval "dir=\$$var"
	case $dir in /*) ;; *) eval "$var=\$(pwd)/\$dir" ;; esac
done
out=$build_dir/$handler

case $handler in
'' | .* | -* | */*) fail "handler \"$handler\" is not an executable name: use the name of the program, e.g. bootstrap" ;;
esac

tmp_base=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$tmp_base/fnhost-go-build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 1' HUP INT TERM

# --- 1. a prebuilt executable -------------------------------------------------------------------
if [ -L "$code_dir/$handler" ]; then
	fail "$code_dir/$handler is a symbolic link: ship the executable itself (fnhost never follows links in a function's code when it builds)"
fi
if [ -f "$code_dir/$handler" ]; then
	exe=$code_dir/$handler
	[ -x "$exe" ] || fail "$exe is not executable: chmod +x it, or remove it so that fnhost builds $handler from source"
	info=$("$go" version -m "$exe" 2>&1) ||
		fail "$exe is not a Go executable ($info); fnhost's go runtime runs Go programs that call fnhost.Start or aws-lambda-go's lambda.Start (any other program that serves Lambda's Runtime API: deploy it with --runtime provided, named bootstrap)"
	host=$("$go" env GOHOSTOS)/$("$go" env GOHOSTARCH)
	target=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*build[[:space:]]*GOOS=//p')/$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*build[[:space:]]*GOARCH=//p')
	[ "$target" = "$host" ] || fail "$exe was built for $target, this host runs $host: rebuild it with GOOS=${host%/*} GOARCH=${host#*/}"
	kind=$(program_kind "$exe" "$info") ||
		fail "$exe is a Go program that imports neither the fnhost module nor github.com/aws/aws-lambda-go/lambda; build it from a main package that calls fnhost.Start or lambda.Start"
	place "$exe" "$kind"
	exit 0
fi

# --- 2. from source ---------------------------------------------------------------------------
if [ -d "$code_dir/$handler" ]; then
	pkg=./$handler
elif [ -d "$code_dir/cmd/$handler" ]; then
	pkg=./cmd/$handler
else
	set -- "$code_dir"/*.go
	[ -e "$1" ] || fail "found neither an executable named $handler nor Go source to build it from; looked for the file $code_dir/$handler and for a main package in $code_dir/$handler/, $code_dir/cmd/$handler/ and $code_dir/"
	pkg=.
fi

if [ -n "$cache_dir" ]; then
	# The function's uid (see the top): private caches, the prepared standard library read-only.
	export GOPATH="$tmp_base/go" GOMODCACHE="$tmp_base/go/pkg/mod" GOCACHE="$tmp_base/go-build"
	if [ -r "$cache_dir/build/README" ]; then
		GOCACHE=$cache_dir/build
		# go fails a build when it cannot write its module index into GOCACHE (it skips every
		# other cache write it cannot make); without the index it reads the sources directly.
		export GODEBUG=goindex=0
	fi
	modcache=$(cat "$cache_dir/gomodcache" 2>/dev/null || true)
	if [ -n "$modcache" ] && [ -r "$modcache/cache/download" ] && [ -x "$modcache/cache/download" ]; then
		export GOPROXY="file://$modcache/cache/download"
	fi
else
	# Caches: the caller's (GOCACHE/GOMODCACHE, else Go's defaults under HOME) when usable, else a
	# private per-user directory under TMPDIR, since a daemon's user may have no usable HOME.
	{
		read -r gocache
		read -r gomodcache
	} <<EOF
$("$go" env GOCACHE GOMODCACHE 2>/dev/null)
EOF
	private_cache() {
		dir=$tmp_base/fnhost-go-$(id -u)
		mkdir -p "$dir" 2>/dev/null && chmod 700 "$dir" 2>/dev/null || true
		# Owned by us and not a symlink: no other user planted it to feed us compiled code.
		[ -d "$dir" ] && [ ! -L "$dir" ] && [ -O "$dir" ] || fail "no usable Go cache: set HOME or GOCACHE for the fnhost daemon ($dir is not ours)"
		printf '%s/%s' "$dir" "$1"
	}
	usable() {
		case $1 in /*) ;; *) return 1 ;; esac
		mkdir -p "$1" 2>/dev/null && [ -w "$1" ]
	}
	usable "$gocache" || gocache=$(private_cache build)
	usable "$gomodcache" || gomodcache=$(private_cache mod)
	export GOCACHE="$gocache" GOMODCACHE="$gomodcache"
fi

if [ -f "$code_dir/go.mod" ]; then
	src=$code_dir
	# cat, not cp: the copies must be writable even when the code is read-only.
	cat "$code_dir/go.mod" >"$scratch/go.mod"
	if [ -f "$code_dir/go.sum" ]; then cat "$code_dir/go.sum" >"$scratch/go.sum"; fi
	modfile=$scratch/go.mod
	set -- "-modfile=$modfile"
else
	src=$scratch/src
	cp -R "$code_dir/." "$src"
	chmod -R u+w "$src" # read-only code stays read-only in a copy, but go.mod is added there
	(cd "$src" && "$go" mod init function >/dev/null 2>&1) || fail "could not create a go.mod for $code_dir"
	modfile=$src/go.mod
	set --
fi
"$go" mod edit -require=fnhost@v0.0.0 -replace="fnhost=$runtime_dir" "$modfile"

# -trimpath keeps the scratch path out of the executable and out of the build cache key, so a
# rebuild of unchanged code is a cache hit; -s -w drop the symbol table and DWARF (faster link,
# and panic stack traces come from pclntab, which stays).
cd "$src"
if ! "$go" build "$@" -trimpath -ldflags='-s -w' -o "$out" "$pkg" >"$scratch/log" 2>&1; then
	echo "fnhost: go build $pkg in $code_dir failed:" >&2
	cat "$scratch/log" >&2
	if [ -n "$cache_dir" ] && grep -q 'module lookup disabled\|GOPROXY\|file://' "$scratch/log"; then
		echo "fnhost: modules other than fnhost come from the module cache of the daemon's user${modcache:+ ($modcache)}, which this build, running as uid $(id -u), must be able to read: run \`go mod download\` in the function's module as that user (builds never download)" >&2
	fi
	exit 1
fi
[ -x "$out" ] || fail "$pkg in $code_dir is not a main package (package main with func main calling fnhost.Start or lambda.Start)"
kind=$(program_kind "$out") || {
	rm -f "$out"
	fail "$pkg in $code_dir imports neither the fnhost module nor github.com/aws/aws-lambda-go/lambda: its func main must call fnhost.Start or lambda.Start (a program serving Lambda's Runtime API in another way: deploy it with --runtime provided)"
}
place "$out" "$kind"
cat "$scratch/log"
