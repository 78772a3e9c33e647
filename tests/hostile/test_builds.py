"""Deploy-time builds are untrusted code (issue #10, item 1), against a real daemon run as root.

A build compiles what a function sent, so it is the function's code at work: it must run as the
function's own uid with its workers' limits and a memory group, in a private scratch directory,
run nothing of the function's own at build time (no annotation processor, no MSBuild import from
a parent directory), and copy nothing through a symbolic link. Each test below is an exploit that
worked when builds ran as root in a /tmp scratch directory.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import stat
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import psutil
import pytest
from fnhost import errors
from fnhost.client import Client
from fnhost.control.config import Settings
from fnhost.control.build_output import copy_build_output
from fnhost.control.runtimes import RuntimeRegistry
from fnhost.execution import limits, sandbox

from tests.conftest import ROOT, Daemon, unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds change identity only under a root daemon")

REGISTRY = RuntimeRegistry()


def toolchain(runtime: str) -> dict[str, str]:
    try:
        return REGISTRY.get(runtime).select()[1]
    except errors.ToolchainMissing as exc:
        pytest.skip(f"{runtime}: toolchain not installed on this host ({exc.message})")


def public_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for dirpath, _, names in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in names:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o644)
    return root


def worker_uid(daemon: Daemon, name: str) -> int:
    # Among all descendants: in its own namespaces the daemon's child is bubblewrap (root, the
    # environment under other names), and the worker with the function's environment is below it.
    for pid in daemon.descendants():
        try:
            proc = psutil.Process(pid)
            if proc.environ().get("AWS_LAMBDA_FUNCTION_NAME") == name:
                return proc.uids().real
        except psutil.Error:
            continue
    raise AssertionError(f"no worker of {name} among the daemon's children")


def files_containing(root: Path, needle: bytes) -> list[Path]:
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file() and needle in path.read_bytes():
                found.append(path)
    return found


# --- a build's processes, watched from outside while it runs ------------------------------------


class BuildWatcher:
    """Polls the daemon's descendants whose working directory is a build scratch directory and
    records, for each, what the kernel says about it (uid, groups, umask, limits, cgroup)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.work = daemon.state_dir / "work"
        self.seen: dict[tuple[int, str], dict] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.daemon_cmdline = " ".join(psutil.Process(self.daemon.pid).cmdline())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = psutil.Process(self.daemon.pid).children(recursive=True)
            except psutil.Error:
                procs = []
            for proc in procs:
                self._look(proc)
            time.sleep(0.005)

    def _look(self, proc: psutil.Process) -> None:
        """Record each program a build process runs (the gate shell, then what it execs)."""
        try:
            key = (proc.pid, " ".join(proc.cmdline()))
            if key in self.seen or key[1] == self.daemon_cmdline:
                return  # seen, or the daemon's fork before its exec (still changing identity)
            if not key[1]:
                # Mid-exec (the new image has no arguments yet; prlimit's own exec is one, still at
                # the daemon's limits) or a zombie: nothing that says which program it is.
                return
            # In a build's scratch directory or below it (Go's build script works in a subdirectory).
            parts = Path(proc.cwd()).parts
            top = len(self.work.parts)
            if parts[:top] != self.work.parts or len(parts) == top or not parts[top].startswith("build-"):
                return
            cwd = self.work / parts[top]
            status = Path(f"/proc/{proc.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            cgroups = Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
            memory_group = next((line.split(":", 2)[2] for line in cgroups if ":memory:" in line), None)
            limit = None
            if memory_group and memory_group != "/":
                limit = int(Path(f"/sys/fs/cgroup/memory{memory_group}/memory.limit_in_bytes").read_text())
            scratch = os.stat(cwd)
            env = proc.environ()
            self.seen[key] = {
                "cmdline": proc.cmdline(),
                "uids": proc.uids(),
                "gids": proc.gids(),
                "groups": fields["Groups"].split(),
                "umask": fields["Umask"].strip(),
                "nofile": open_files_limit(proc.pid),
                "cwd": cwd,
                "home": env.get("HOME"),
                "tmpdir": env.get("TMPDIR"),
                "scratch_owner": scratch.st_uid,
                "scratch_mode": stat.S_IMODE(scratch.st_mode),
                "memory_group": memory_group,
                "memory_limit": limit,
            }
        except (psutil.Error, OSError):
            pass  # it ended meanwhile
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in this thread
            self.errors.append(repr(exc))


def open_files_limit(pid: int) -> tuple[int, int]:
    """RLIMIT_NOFILE (soft, hard) from /proc: prlimit(2) on another uid's process needs capabilities."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit for {pid}")


def example_code(runtime: str, public_dir: Path) -> tuple[str, Path]:
    """The runtime's own example, copied where the function's uid can read it."""
    rt = REGISTRY.get(runtime)
    code = public_dir / f"{runtime}-example"
    subprocess.run(["cp", "-R", str(ROOT / "runtimes" / runtime / "example"), str(code)], check=True)
    public_tree(code, {})
    assert rt.example_handler
    return rt.example_handler, code


@pytest.mark.parametrize("runtime", ["java", "go", "dotnet"])
def test_a_build_runs_as_the_function_confined_like_its_workers(
        daemon: Daemon, client: Client, public_dir: Path, runtime: str) -> None:
    toolchain(runtime)
    handler, code = example_code(runtime, public_dir)
    name = unique(f"build-as-{runtime}")
    if runtime == "go":
        # Over the shared standard library a Go build of the example takes a fraction of a
        # second, which a poller of /proc can miss on a busy host: give the compiler work, and
        # work no earlier run left in a build cache (the name makes the file new each time).
        funcs = "\n".join(f"func pad{i}(x int) int {{ return x*{i} + {i} }}" for i in range(4000))
        (code / "padding.go").write_text(f'package main\n\nconst buildNonce = "{name}"\n\n{funcs}\n')
        (code / "padding.go").chmod(0o644)
    with BuildWatcher(daemon) as watcher:
        client.create_function(name, runtime=runtime, handler=handler, code=str(code))
    assert json.loads(client.invoke(name, b'{"name": "Ada"}').payload)["message"] == "Hello, Ada!"
    uid = worker_uid(daemon, name)
    assert uid != 0
    assert watcher.errors == []
    assert watcher.seen, "no build process ran in a scratch directory under the state directory's work/"
    memory_mb = REGISTRY.get(runtime).select()[0].build_memory_mb
    cgroup = any(e.get("backend", "").startswith("cgroup") for e in daemon.log_events()
                 if e.get("event") == "memory_backend")
    for (pid, cmdline), seen in watcher.seen.items():
        what = f"build process {pid}: {cmdline[:200]}"
        assert set(seen["uids"]) == {uid}, what  # real, effective and saved: the function's own
        assert set(seen["gids"]) == {uid}, what
        assert seen["groups"] == [], what
        assert seen["umask"] == "0077", what
        assert (seen["scratch_owner"], seen["scratch_mode"]) == (uid, 0o700), what
        if cmdline.startswith(sandbox.limited_argv(["x"], True)[0]):
            continue  # prlimit itself, about to set the limits and exec (its environ may be read mid-exec)
        assert seen["home"] == seen["tmpdir"] == str(seen["cwd"]), what
        assert seen["nofile"] == (sandbox.NOFILE, sandbox.NOFILE), what
        # The gate shell is held before anything of the build runs, and may be seen before the
        # daemon has moved it into the build's memory group.
        if cgroup and not cmdline.startswith("/bin/sh -c read"):
            assert seen["memory_limit"] == memory_mb * 1024 * 1024, what
    # What workers run is the daemon's copy: nothing under builds/ belongs to a function's uid.
    owners = {os.lstat(Path(d, n)).st_uid for d, ds, fs in os.walk(daemon.state_dir / "builds") for n in ds + fs}
    assert owners <= {0}
    assert not list((daemon.state_dir / "work").glob("build-*")), "a build's scratch directory was left behind"


# --- Java: annotation processors, links ---------------------------------------------------------

PROCESSOR = '''\
package evil;

import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Set;
import javax.annotation.processing.AbstractProcessor;
import javax.annotation.processing.ProcessingEnvironment;
import javax.annotation.processing.RoundEnvironment;
import javax.annotation.processing.SupportedAnnotationTypes;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.TypeElement;

/** Found by javac through META-INF/services when this jar is on the class path; runs in javac. */
@SupportedAnnotationTypes("*")
public class Marker extends AbstractProcessor {
    @Override
    public synchronized void init(ProcessingEnvironment env) {
        super.init(env);
        try {
            byte[] status = Files.readAllBytes(Paths.get("/proc/self/status"));
            Files.write(Paths.get(MARKS, "ran-" + ProcessHandle.current().pid()), status);
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    @Override
    public boolean process(Set<? extends TypeElement> annotations, RoundEnvironment round) {
        return false;
    }

    @Override
    public SourceVersion getSupportedSourceVersion() {
        return SourceVersion.latestSupported();
    }
}
'''

JAVA_HANDLER = '''\
package hello;

import java.nio.file.Files;
import java.nio.file.Paths;

public class Hello {
    public String handleRequest(Object event, fnhost.Context context) throws Exception {
        java.io.InputStream in = Hello.class.getClassLoader().getResourceAsStream("alias.txt");
        String alias = in == null ? "none" : new String(in.readAllBytes()).trim();
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("Uid:")) {
                return line.split("\\\\s+")[1] + " " + alias;
            }
        }
        return "?";
    }
}
'''


@pytest.fixture
def marks(public_dir: Path) -> Path:
    """A directory every uid may write into (as /tmp): where the processor leaves its marks."""
    path = public_dir / "marks"
    path.mkdir()
    path.chmod(0o1777)
    return path


def processor_jar(public_dir: Path, marks: Path, javac: str) -> Path:
    src = public_dir / "processor-src"
    (src / "evil").mkdir(parents=True)
    (src / "evil" / "Marker.java").write_text(PROCESSOR.replace("MARKS", json.dumps(str(marks))))
    classes = public_dir / "processor-classes"
    subprocess.run([javac, "-d", str(classes), str(src / "evil" / "Marker.java")], check=True, timeout=120)
    jar = public_dir / "proc.jar"
    with zipfile.ZipFile(jar, "w") as z:
        z.write(classes / "evil" / "Marker.class", "evil/Marker.class")
        z.writestr("META-INF/services/javax.annotation.processing.Processor", "evil.Marker\n")
    return jar


def test_an_annotation_processor_in_a_lib_jar_never_runs(
        daemon: Daemon, client: Client, public_dir: Path, marks: Path) -> None:
    tools = toolchain("java")
    javac = str(Path(tools["java"]).with_name("javac"))
    jar = processor_jar(public_dir, marks, javac)
    code = public_tree(public_dir / "code", {"hello/Hello.java": JAVA_HANDLER})
    (code / "lib").mkdir(mode=0o755)
    (code / "lib" / "proc.jar").write_bytes(jar.read_bytes())
    (code / "lib" / "proc.jar").chmod(0o644)

    # The exploit is real: javac as a deploy used to run it loads the processor from the jar.
    probe = public_dir / "probe"
    subprocess.run([javac, "-d", str(probe), "-cp", str(code / "lib" / "proc.jar"),
                    "-sourcepath", f"{code}:{ROOT / 'runtimes/java/src'}", str(code / "hello" / "Hello.java")],
                   check=True, timeout=120, capture_output=True)
    assert list(marks.iterdir()), "the processor jar does not work: the test proves nothing"
    for mark in marks.iterdir():
        mark.unlink()

    name = unique("java-processor")
    client.create_function(name, runtime="java", handler="hello.Hello::handleRequest", code=str(code))
    uid, alias = json.loads(client.invoke(name, b"{}").payload).split()
    assert int(uid) != 0 and alias == "none"
    assert list(marks.iterdir()) == [], "the function's annotation processor ran during its build"


def test_a_link_out_of_the_code_is_never_copied_into_a_build(
        daemon: Daemon, client: Client, public_dir: Path) -> None:
    toolchain("java")
    token = secrets.token_hex(16)
    private = public_dir / "root-only"
    private.mkdir(mode=0o700)
    secret = private / "secret.txt"
    secret.write_text(f"root-only {token}\n")
    secret.chmod(0o600)
    code = public_tree(public_dir / "code", {
        "src/main/java/hello/Hello.java": JAVA_HANDLER,
        "src/main/resources/config.txt": "config\n",
    })
    (code / "src/main/resources/leak.txt").symlink_to(secret)

    name = unique("java-link-out")
    with pytest.raises(errors.BuildFailed) as info:
        client.create_function(name, runtime="java", handler="hello.Hello::handleRequest", code=str(code))
    assert "leak.txt is a symbolic link" in info.value.message
    assert token not in info.value.message
    assert files_containing(daemon.state_dir, token.encode()) == []
    assert not client.list_functions() or name not in {f.function_name for f in client.list_functions()}


def test_a_link_to_a_file_inside_the_code_is_copied_as_that_file(
        daemon: Daemon, client: Client, public_dir: Path) -> None:
    toolchain("java")
    code = public_tree(public_dir / "code", {
        "src/main/java/hello/Hello.java": JAVA_HANDLER,
        "src/main/resources/config.txt": "in-code\n",
    })
    (code / "src/main/resources/alias.txt").symlink_to("config.txt")
    name = unique("java-link-in")
    client.create_function(name, runtime="java", handler="hello.Hello::handleRequest", code=str(code))
    _, alias = json.loads(client.invoke(name, b"{}").payload).split()
    assert alias == "in-code"


# --- Go -----------------------------------------------------------------------------------------


def test_a_prebuilt_go_executable_that_is_a_link_is_refused(client: Client, public_dir: Path) -> None:
    toolchain("go")
    private = public_dir / "root-only"
    private.mkdir(mode=0o700)
    target = private / "bootstrap"
    target.write_bytes(b"\x7fELF not really")
    target.chmod(0o700)
    code = public_tree(public_dir / "code", {})
    (code / "bootstrap").symlink_to(target)
    with pytest.raises(errors.BuildFailed) as info:
        client.create_function(unique("go-link"), runtime="go", handler="bootstrap", code=str(code))
    assert "bootstrap is a symbolic link: ship the executable itself" in info.value.message


# --- .NET ---------------------------------------------------------------------------------------

PLANTED_PROPS = '''\
<Project>
  <Target Name="FnhostPlanted" BeforeTargets="Build">
    <WriteLinesToFile File="MARK" Lines="planted" />
    <Error Text="planted Directory.Build.props was imported" />
  </Target>
</Project>
'''


@pytest.fixture
def planted_props(marks: Path) -> Iterator[Path]:
    """/tmp/Directory.Build.props, as any function could leave it for a build under /tmp."""
    path = Path("/tmp/Directory.Build.props")
    if path.exists() or path.is_symlink():
        pytest.skip(f"{path} exists already; not ours to replace")
    path.write_text(PLANTED_PROPS.replace("MARK", str(marks / "imported")))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def test_a_dotnet_build_imports_nothing_planted_in_tmp(
        daemon: Daemon, client: Client, public_dir: Path, marks: Path, planted_props: Path) -> None:
    toolchain("dotnet")
    handler, code = example_code("dotnet", public_dir)
    name = unique("dotnet-planted")
    client.create_function(name, runtime="dotnet", handler=handler, code=str(code))
    assert json.loads(client.invoke(name, b'{"name": "Ada"}').payload)["message"] == "Hello, Ada!"
    assert list(marks.iterdir()) == []


# --- the pieces, with real processes ------------------------------------------------------------


@pytest.fixture
def identity() -> sandbox.Identity:
    """A uid no user and no function has: just below the daemon's range (worker_uid_base + 1 …)."""
    uid = Settings().worker_uid_base
    try:
        pwd.getpwuid(uid)
        pytest.skip(f"uid {uid} has a passwd entry here")
    except KeyError:
        pass
    return sandbox.Identity(uid, uid, own=True)


def test_run_confined_runs_as_the_identity_and_kills_every_process_at_the_deadline(
        public_dir: Path, identity: sandbox.Identity) -> None:
    scratch = sandbox.prepare_scratch(public_dir, "scratch", identity)
    script = (
        "id -u; id -G; umask; ulimit -n; "
        "sleep 300 & setsid sleep 301 & "
        "echo started; exec sleep 302"
    )
    backend = limits.choose_backend("auto")
    try:
        started = time.monotonic()
        ran = sandbox.run_confined(["/bin/sh", "-c", script], identity=identity, cwd=scratch,
                                   env={"PATH": os.defpath}, timeout_s=2, memory_limit_bytes=256 << 20,
                                   backend=backend)
        elapsed = time.monotonic() - started
    finally:
        backend.close()
    assert ran.returncode is None and not ran.out_of_memory
    assert elapsed < 4
    lines = ran.output.split()
    assert lines[:5] == [str(identity.uid), str(identity.gid), "0077", str(sandbox.NOFILE), "started"]
    leftovers = running_as(identity.uid)
    if backend.kernel_enforced:  # the memory group catches the one that left the process group
        assert leftovers == []
    else:
        assert all("301" in " ".join(p.cmdline()) for p in leftovers)
        for p in leftovers:
            p.kill()


def running_as(uid: int, wait_s: float = 3.0) -> list[psutil.Process]:
    """Live (not zombie) processes of ``uid``, after waiting up to ``wait_s`` for them to go."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for p in psutil.process_iter(["uids", "status"]):
            if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_run_confined_keeps_only_the_tail_of_a_flood(public_dir: Path, identity: sandbox.Identity) -> None:
    scratch = sandbox.prepare_scratch(public_dir, "scratch", identity)
    ran = sandbox.run_confined(["/bin/sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo last"],
                               identity=identity, cwd=scratch, env={"PATH": os.defpath}, timeout_s=60)
    assert ran.returncode == 0
    assert len(ran.output) <= sandbox.OUTPUT_TAIL
    assert ran.output.endswith("x\nlast\n")


def test_run_confined_holds_the_build_to_its_memory_limit(public_dir: Path, identity: sandbox.Identity) -> None:
    scratch = sandbox.prepare_scratch(public_dir, "scratch", identity)
    python = os.path.realpath("/usr/bin/python3")
    backend = limits.choose_backend("auto")
    try:
        ran = sandbox.run_confined(
            [python, "-c", "import time; b = b'x' * (400 << 20); time.sleep(30)"],
            identity=identity, cwd=scratch, env={"PATH": os.defpath}, timeout_s=20,
            memory_limit_bytes=128 << 20, backend=backend)
    finally:
        backend.close()
    assert ran.out_of_memory, ran


def test_a_build_output_is_copied_without_following_links(public_dir: Path) -> None:
    src = public_dir / "out"
    (src / "sub").mkdir(parents=True)
    (src / "tool").write_text("#!/bin/sh\n")
    (src / "tool").chmod(0o700)
    (src / "sub" / "data").write_text("data")
    (src / "sub" / "data").chmod(0o600)
    dst = public_dir / "copy"
    dst.mkdir()
    copy_build_output(src, dst)
    assert stat.S_IMODE(os.stat(dst / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dst / "sub" / "data").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(dst / "sub").st_mode) == 0o755
    assert (dst / "sub" / "data").read_text() == "data"

    (src / "sub" / "passwd").symlink_to("/etc/passwd")
    again = public_dir / "again"
    again.mkdir()
    with pytest.raises(errors.BuildFailed, match="symbolic link at sub/passwd"):
        copy_build_output(src, again)
    assert not (again / "sub" / "passwd").exists()
    (src / "sub" / "passwd").unlink()
    os.mkfifo(src / "fifo")
    third = public_dir / "third"
    third.mkdir()
    with pytest.raises(errors.BuildFailed, match="special file at fifo"):
        copy_build_output(src, third)
