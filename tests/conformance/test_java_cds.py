"""Java: the shim's class-data sharing archive (runtimes/java/Build.java's Prepare, runtime.toml's
[launch]) is what workers map, and anything wrong with it costs speed, never a worker."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.floors import WorkerHop
from bench.functions import EchoFunction
from fnhost import errors
from fnhost.client import Client
from fnhost.control.build_caches import worker_cache_dir
from fnhost.control.runtimes import Runtime, RuntimeRegistry
from tests.conftest import fixture_case, public_code, short_tempdir, unique

try:
    RuntimeRegistry().get("java").select()
except errors.ToolchainMissing as exc:
    pytest.skip(f"java: toolchain not installed on this host ({exc.message})", allow_module_level=True)

# A function that lists the CDS archives its own JVM has mapped.
MAPS = """\
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class Maps {
    public List<String> handleRequest(Map<String, Object> event) throws Exception {
        List<String> out = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
            int slash = line.indexOf('/');
            if (line.endsWith(".jsa") && slash >= 0 && !out.contains(line.substring(slash))) {
                out.add(line.substring(slash));
            }
        }
        return out;
    }
}
"""


def test_workers_map_the_shim_archive(client: Client) -> None:
    """Through the daemon (worker namespaces where the host allows them): the first worker of a
    new function maps the prepared archive from the host's cache, on top of the JDK's own."""
    code = public_code({"Maps.java": MAPS})
    try:
        name = unique("java-cds-maps")
        client.create_function(name, runtime="java", handler="Maps::handleRequest", code=str(code))
        result = client.invoke(name, b"{}")
    finally:
        shutil.rmtree(code, ignore_errors=True)
    assert result.function_error == "", result.payload
    mapped = json.loads(result.payload)
    assert any(p.endswith("/lib/server/classes.jsa") for p in mapped), mapped
    cache = worker_cache_dir("java")  # the test daemon has this process's environment
    if cache:
        assert f"{cache}/shim.jsa" in mapped, mapped
    else:  # no cache this user may trust: the JDK's default archive alone
        assert len(mapped) == 1, mapped


@pytest.fixture
def cache_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache root of this test's own, prepared for java, that workers spawned here use."""
    root = short_tempdir(0o755)
    monkeypatch.setenv("FNHOST_CACHE_DIR", str(root))
    RuntimeRegistry().get("java").prepare(root / "java")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _echo(workdir: Path) -> tuple[list[str], str]:
    """A worker of the echo fixture spawned as the daemon spawns one, one invoke: (the archives
    its JVM mapped, everything it wrote to stdout and stderr). Raises RuntimeError on a failure."""
    runtime: Runtime = RuntimeRegistry().get("java")
    handler, code = fixture_case("java", "echo")
    hop = WorkerHop(runtime, EchoFunction("java", handler, code, True), workdir)
    try:
        hop.start(timeout=60.0)
        _, body = hop.roundtrips(b'{"x": 1}', 1, 0)
        assert json.loads(body) == {"x": 1}
        with open(f"/proc/{hop.proc.pid}/maps") as f:  # type: ignore[union-attr]
            mapped = sorted({line[line.index("/"):].strip() for line in f if line.strip().endswith(".jsa")})
    finally:
        hop.close()
    return mapped, hop.log_path.read_text()


def test_a_prepared_archive_is_used_and_kept(cache_root: Path) -> None:
    work = short_tempdir()
    try:
        mapped, output = _echo(work)
        assert str(cache_root / "java" / "shim.jsa") in mapped
        assert output == ""
        made = (cache_root / "java" / "shim.jsa").stat()
        assert made.st_mode & 0o004, "workers run as other users: the archive must be readable by them"
        # Prepared again (another daemon, another start): same JDK, same shim, nothing redone.
        RuntimeRegistry().get("java").prepare(cache_root / "java")
        assert (cache_root / "java" / "shim.jsa").stat().st_mtime_ns == made.st_mtime_ns
        # Another JDK or shim (its key differs): made again.
        (cache_root / "java" / "shim.key").write_text("another JDK\n")
        RuntimeRegistry().get("java").prepare(cache_root / "java")
        assert (cache_root / "java" / "shim.jsa").stat().st_mtime_ns != made.st_mtime_ns
        assert (cache_root / "java" / "shim.key").read_text() != "another JDK\n"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _missing(java: Path) -> None:
    (java / "shim.jsa").unlink()
    (java / "fnhost-shim.jar").unlink()


def _stale_jar(java: Path) -> None:
    os.utime(java / "fnhost-shim.jar", (1, 1))  # not the jar the archive was made with


def _another_jdk(java: Path) -> None:
    # What a JDK upgrade leaves until the next prepare: an archive whose header names another
    # JVM build. (A damaged header stops the JVM: Prepare only ever renames a checked archive
    # into place, in a directory only the daemon's user may write.)
    archive = java / "shim.jsa"
    data = bytearray(archive.read_bytes())
    at = data.index(b" VM (") + len(b" VM (")  # "OpenJDK 64-Bit Server VM (17.0.15+6-...) for ..."
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    archive.chmod(0o644)
    archive.write_bytes(bytes(data))


def _refused_root(java: Path) -> None:
    java.parent.chmod(0o777)  # a cache root others may write is not used at all


@pytest.mark.parametrize("spoil", [_missing, _stale_jar, _another_jdk, _refused_root], ids=lambda f: f.__name__[1:])
def test_a_broken_archive_falls_back_silently(cache_root: Path, spoil) -> None:  # type: ignore[no-untyped-def]
    """Each way the cache can be wrong: the worker serves on the JDK's default archive, and the
    JVM's complaint does not reach the function's log."""
    spoil(cache_root / "java")
    work = short_tempdir()
    try:
        mapped, output = _echo(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert [p for p in mapped if p.endswith("/lib/server/classes.jsa")], mapped
    assert not [p for p in mapped if p.endswith("shim.jsa")], mapped
    assert output == ""
