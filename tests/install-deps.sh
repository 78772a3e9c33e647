#!/bin/sh
# Installs what the test suite needs on a fresh Debian 12 machine: the runtimes' toolchains that
# come from Debian (Go, Java 17, Node 20 and Python 3.11 are expected to be there already), bubblewrap
# (each worker's own mount and pid namespaces; without it workers share the host's view), jq and
# curl (tests/fixtures/provided, a bash bootstrap as in AWS's custom-runtime tutorial),
# gcc and libc6-dev (the Python zygote's fnhost-init, runtimes/python/init.c, built once per host),
# nats-server (the tests start their own JetStream servers for the asynchronous queue across
# hosts and for event source mappings: tests/nats_server.py) and fnhost itself with its test
# extras. Safe to run twice.
set -eu
cd "$(dirname "$0")/.."
need=""
for pkg in ruby mono-mcs mono-runtime bubblewrap jq curl nats-server gcc libc6-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
python3 -m pip install -q -e '.[test]'
# What deploy-time builds share (Go's compiled standard library): once per host, about a minute,
# instead of inside the first test that deploys a Go function.
python3 -m fnhost prepare
