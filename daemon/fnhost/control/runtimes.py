"""Runtime descriptors (``runtimes/<lang>/runtime.toml``) and what the daemon does with them.

Everything language-specific is data read from those files; nothing here names a language.
Toolchains are looked up once per daemon (at first use) so spawning a worker is a dictionary
lookup and a string substitution, never a PATH search.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ..errors import BuildFailed, InvalidParameter, ToolchainMissing
from ..execution import sandbox
from ..execution.limits import MemoryBackend
from ..execution.sandbox import Identity, executable_by_others
from ..execution.zygote import ZygoteKey, key_for
from .build_output import copy_build_output

log = structlog.get_logger("fnhost.runtimes")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FUNCTION_PLACEHOLDERS = {"code_dir", "build_dir", "handler", "layers_dir", "layers_source", "scratch_dir"}

MiB = 1024 * 1024


def data_dir(name: str) -> Path:
    """``runtimes`` or ``protos``: inside an installed wheel, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]  # fnhost/
    installed = package / "_data" / name
    return installed if installed.is_dir() else package.parents[1] / name


@dataclass(frozen=True, slots=True)
class Toolchain:
    key: str
    find: tuple[str, ...]
    resolve: tuple[str, ...] = ()
    install_hint: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    """One complete way to build and launch a runtime (most runtimes have exactly one)."""

    name: str
    toolchains: tuple[Toolchain, ...]
    launch_argv: tuple[str, ...]
    launch_env: dict[str, str] = field(default_factory=dict)
    build_argv: tuple[str, ...] = ()
    build_env: dict[str, str] = field(default_factory=dict)
    build_timeout_s: float = 300.0
    build_memory_mb: int = 2048
    prepare_argv: tuple[str, ...] = ()
    zygote_argv: tuple[str, ...] = ()  # [zygote]: a warm process that forks workers (execution/zygote.py)
    startup_env: tuple[str, ...] = ()  # [zygote]: variables read only at start-up (fnmatch patterns)
    stem_argv: tuple[str, ...] = ()  # [stem_cell]: how a cell starts (execution/stemcell.py); (): no cells
    stem_startup_env: tuple[str, ...] = ()  # [stem_cell]: variables read only at start-up


@dataclass(slots=True)
class Runtime:
    name: str
    display_name: str
    directory: Path
    handler_pattern: re.Pattern[str]
    handler_help: str
    variants: tuple[Variant, ...]
    example_handler: str | None = None
    public: bool = False  # workers run as other users: toolchains must be usable by them
    # runtime.toml's [layers] env: Lambda's search paths into a function's layers ({layers_dir}),
    # put before whatever the variable held (the function's own setting still wins).
    layer_env: dict[str, str] = field(default_factory=dict)
    _chosen: tuple[Variant, dict[str, str]] | None = None
    _prepared: set[Path] = field(default_factory=set)
    _prepare_lock: threading.Lock = field(default_factory=threading.Lock)

    def check_handler(self, handler: str) -> None:
        """Raise InvalidParameter unless ``handler`` has this runtime's shape and stays inside the code."""
        parts = re.split(r"[/\\]", handler)
        if handler.startswith("/") or ".." in parts or any(p.startswith("..") for p in parts):
            raise InvalidParameter(
                f"handler {handler!r} points outside the function's code directory; "
                f"use {self.handler_help}"
            )
        if not self.handler_pattern.match(handler):
            raise InvalidParameter(
                f"handler {handler!r} is not valid for runtime {self.name}: use {self.handler_help}"
            )

    def select(self) -> tuple[Variant, dict[str, str]]:
        """The first variant whose toolchains are all present, with their absolute paths."""
        if self._chosen is None:
            missing: list[str] = []
            for variant in self.variants:
                paths = {}
                for tc in variant.toolchains:
                    path = _find_toolchain(tc, self.public)
                    if path is None:
                        hint = tc.install_hint + ("; it must be executable by other users, since "
                                                  "workers run as their own uid" if self.public else "")
                        missing.append(f"{tc.key} ({hint})" if hint else tc.key)
                        break
                    paths[tc.key] = path
                else:
                    self._chosen = (variant, paths)
                    log.info("runtime_ready", runtime=self.name, variant=variant.name, toolchains=paths)
                    break
            else:
                raise ToolchainMissing(
                    f"runtime {self.name} cannot run on this host: missing " + "; or ".join(missing)
                )
        return self._chosen

    @property
    def builds(self) -> bool:
        return bool(self.select()[0].build_argv)

    @property
    def prepares(self) -> bool:
        """Whether its builds read what a prepare step leaves in the build cache (Go's standard library)."""
        return bool(self.select()[0].prepare_argv)

    def values(self, **extra: str) -> dict[str, str]:
        variant, paths = self.select()
        return {**paths, "runtime_dir": str(self.directory), **extra}

    def launch(self, values: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        variant, _ = self.select()
        argv = [substitute(a, values) for a in variant.launch_argv]
        env = {k: substitute(v, values) for k, v in variant.launch_env.items()}
        return argv, env

    @property
    def has_zygote(self) -> bool:
        """Whether any variant has a [zygote]: known without looking for a toolchain."""
        return any(v.zygote_argv for v in self.variants)

    def zygote(self, values: dict[str, str], env: dict[str, str]) -> ZygoteKey | None:
        """Which zygote forks a worker that ``launch`` would start with ``env``; None: none does."""
        variant, _ = self.select()
        if not variant.zygote_argv:
            return None
        argv = [substitute(a, values) for a in variant.zygote_argv]
        return key_for(self.name, argv, values["runtime_dir"], env, variant.startup_env, values.get("cache_dir", ""))

    def stem_cell(self, values: dict[str, str]) -> tuple[list[str], tuple[str, ...]] | None:
        """How a stem cell of this runtime starts (argv) and the variables it reads only then;
        None when it has no [stem_cell], or its argv needs a cache there is not."""
        variant, _ = self.select()
        if not variant.stem_argv:
            return None
        cache = values.get("cache_dir", "")
        if not cache and any("{cache_dir}" in a for a in variant.stem_argv):
            return None
        argv = [substitute(a, values) for a in variant.stem_argv]
        if cache and not all(os.path.exists(p) for p in _paths_under(argv, cache)):
            return None  # what the prepare step leaves there is not (yet): a cell could not start
        return argv, variant.stem_startup_env

    def installed_under(self, directory: str) -> bool:
        """Whether one of the chosen variant's toolchains really lives under ``directory``."""
        root = directory.rstrip("/") + "/"
        return any(os.path.realpath(path).startswith(root) for path in self.select()[1].values())

    def layers_env(self, values: dict[str, str], env: dict[str, str]) -> dict[str, str]:
        """The [layers] env variables for a worker whose layers are at ``values["layers_dir"]``,
        each put before what ``env`` holds for it."""
        out = {}
        for key, template in self.layer_env.items():
            value = substitute(template, values)
            out[key] = f"{value}:{env[key]}" if env.get(key) else value
        return out

    @property
    def build_reads_layers(self) -> bool:
        """Whether this runtime's build reads the function's layers (``{layers_source}``)."""
        variant, _ = self.select()
        return any("{layers_source}" in a for a in variant.build_argv)

    def build(self, code_dir: Path, build_dir: Path, handler: str, scratch: Path, *,
              identity: Identity | None = None, cache_dir: Path | None = None,
              backend: MemoryBackend | None = None, layers: tuple[Path, str] | None = None) -> str:
        """Run the descriptor's build step as the untrusted code it is; its result lands in ``build_dir``.

        ``scratch`` is the build's private directory — its working directory, TMPDIR and (with an
        ``identity``) HOME — owned by ``identity``. The build runs as ``identity`` (None: this
        process's user) through ``sandbox.run_confined``: the workers' rlimits, umask 077, its own
        process group and, with ``backend``, a memory group of ``[build] memory_mb``. It writes
        into a directory in ``scratch``; this process then copies that tree into ``build_dir`` (existing and
        empty) as files and directories of its own, never following a link, so nothing the build
        left behind — a link, an open descriptor, a process — reaches what workers run.
        ``cache_dir``: where the descriptor's ``[build] prepare_argv`` keeps what builds may read
        and not write (Go's compiled standard library). ``layers``: the function's merged layers
        (``{layers_source}``) and where its workers see them (``{layers_dir}``). Returns the
        build's output (its tail); raises BuildFailed with that tail.
        """
        variant, _ = self.select()
        if cache_dir is not None and variant.prepare_argv:
            self._prepare(variant, cache_dir)
        out = Path(tempfile.mkdtemp(dir=scratch, prefix="out-"))  # 0700
        if identity is not None:
            os.chown(out, identity.uid, identity.gid)
        values = self.values(code_dir=str(code_dir), build_dir=str(out), handler=handler,
                             memory_mb=str(variant.build_memory_mb), scratch_dir=str(scratch),
                             cache_dir=str(cache_dir or ""), layers_source=str(layers[0]) if layers else "",
                             layers_dir=layers[1] if layers else "")
        argv = [substitute(a, values) for a in variant.build_argv]
        # Nothing of the daemon's environment but where programs are; a daemon that keeps its
        # identity keeps its HOME too (and so its toolchains' caches, as before builds ran confined).
        keep = ("PATH", "LANG") if identity is not None else ("PATH", "LANG", "HOME", "USER")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.setdefault("HOME", str(scratch))
        env["TMPDIR"] = str(scratch)
        env.update({k: substitute(v, values) for k, v in variant.build_env.items()})
        what = f"building the function for runtime {self.name}"
        where = f"[build] in {self.directory / 'runtime.toml'}"
        try:
            ran = sandbox.run_confined(argv, identity=identity, cwd=scratch, env=env,
                                       timeout_s=variant.build_timeout_s,
                                       memory_limit_bytes=variant.build_memory_mb * MiB, backend=backend)
        except OSError as exc:
            raise BuildFailed(f"{what}: could not start {argv[0]}: {exc}") from exc
        if ran.out_of_memory:
            raise BuildFailed(
                f"{what} ran out of memory: its processes used more than {variant.build_memory_mb} MB "
                f"together (memory_mb, {where}) and were killed:\n{ran.output[-2048:]}"
            )
        if ran.returncode is None:
            raise BuildFailed(
                f"{what} took longer than {variant.build_timeout_s:.0f} s (timeout_s, {where}); every "
                f"process it started was killed:\n{ran.output[-2048:]}"
            )
        if ran.returncode != 0:
            raise BuildFailed(f"{what} failed (exit status {ran.returncode}):\n{ran.output[-4096:]}")
        copy_build_output(out, build_dir)
        return ran.output

    def prepare(self, cache_dir: Path) -> bool:
        """Run the descriptor's ``[build] prepare_argv`` now, if it has one (``fnhost prepare``).

        Returns whether there was anything to prepare; raises ToolchainMissing.
        """
        variant, _ = self.select()
        if not variant.prepare_argv:
            return False
        self._prepare(variant, cache_dir)
        return True

    def _prepare(self, variant: Variant, cache_dir: Path) -> None:
        """``[build] prepare_argv``, once per cache directory and daemon, before the first build.

        It runs as this process's own user with trusted inputs only — the toolchain and the
        runtime folder, never a function's code — and umask 022, so what it leaves in
        ``cache_dir`` every build may read and none may change. A failure only costs speed: it is
        logged, and builds go on without the cache.
        """
        with self._prepare_lock:
            if cache_dir in self._prepared:
                return
            self._prepared.add(cache_dir)
            cache_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(cache_dir, 0o755)
            argv = [substitute(a, self.values(cache_dir=str(cache_dir))) for a in variant.prepare_argv]
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "USER")}
            env["TMPDIR"] = str(cache_dir)
            started = time.perf_counter()
            try:
                ran = sandbox.run_confined(argv, identity=None, cwd=cache_dir, env=env,
                                           timeout_s=variant.build_timeout_s, umask=0o022)
            except OSError as exc:
                log.warning("build_prepare_failed", runtime=self.name, error=str(exc))
                return
            if ran.returncode != 0:
                log.warning("build_prepare_failed", runtime=self.name, status=ran.returncode,
                            output=ran.output[-2048:])
                return
            log.info("build_prepared", runtime=self.name, cache_dir=str(cache_dir),
                     seconds=round(time.perf_counter() - started, 3))


def _paths_under(argv: list[str], directory: str) -> list[str]:
    """The paths under ``directory`` that ``argv`` names, whole or in a ``-Dkey=`` or ``a:b`` list."""
    prefix = directory.rstrip("/") + "/"
    return [part for arg in argv for part in re.split(r"[:=]", arg) if part.startswith(prefix)]


def substitute(template: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"unknown placeholder {{{key}}} in a runtime descriptor")
        return values[key]

    return _PLACEHOLDER.sub(one, template)


def _candidates(name: str) -> list[str]:
    """Every executable called ``name`` on PATH, in PATH order (or ``name`` itself if absolute)."""
    if os.path.isabs(name):
        return [name] if os.access(name, os.X_OK) else []
    found = []
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK) and path not in found:
            found.append(path)
    return found


def _find_toolchain(tc: Toolchain, public: bool) -> str | None:
    """The first usable executable; with ``public``, one that other users may run too."""
    for name in tc.find:
        for candidate in _candidates(name):
            path = os.path.realpath(candidate)
            if tc.resolve:
                try:
                    out = subprocess.run(
                        [path, *tc.resolve], capture_output=True, timeout=30, check=True
                    ).stdout.decode().strip()
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("toolchain_resolve_failed", toolchain=tc.key, path=path, error=str(exc))
                    continue
                if out and os.path.isabs(out) and os.access(out, os.X_OK):
                    path = out
            if public and not executable_by_others(path):
                # e.g. a pyenv interpreter under /root: workers running as their own uid cannot use it
                log.info("toolchain_not_public", toolchain=tc.key, path=path)
                continue
            return path
    return None


def _variant(name: str, table: dict[str, Any], where: str) -> Variant:
    toolchains = tuple(
        Toolchain(
            key=key,
            find=tuple(spec["find"]),
            resolve=tuple(spec.get("resolve", ())),
            install_hint=spec.get("install_hint", ""),
        )
        for key, spec in table.get("toolchain", {}).items()
    )
    launch = table.get("launch")
    if not launch or not launch.get("argv"):
        raise ValueError(f"{where}: [launch] argv is required")
    build = table.get("build", {})
    zygote = table.get("zygote", {})
    stem = table.get("stem_cell")
    stem_argv = tuple(stem.get("argv", launch["argv"])) if stem is not None else ()
    function_owned = {k for a in stem_argv for k in _PLACEHOLDER.findall(a)} & _FUNCTION_PLACEHOLDERS
    if function_owned:
        raise ValueError(f"{where}: [stem_cell] argv may not use " + ", ".join(
            f"{{{k}}}" for k in sorted(function_owned)) + ": a stem cell is of no function")
    return Variant(
        name=name,
        toolchains=toolchains,
        launch_argv=tuple(launch["argv"]),
        launch_env=dict(launch.get("env", {})),
        build_argv=tuple(build.get("argv", ())),
        build_env=dict(build.get("env", {})),
        build_timeout_s=float(build.get("timeout_s", 300)),
        build_memory_mb=int(build.get("memory_mb", 2048)),
        prepare_argv=tuple(build.get("prepare_argv", ())),
        zygote_argv=tuple(zygote.get("argv", ())),
        startup_env=tuple(zygote.get("startup_env", ())),
        stem_argv=stem_argv,
        stem_startup_env=tuple(stem.get("startup_env", ())) if stem is not None else (),
    )


def load_runtime(directory: Path) -> Runtime:
    where = str(directory / "runtime.toml")
    with open(directory / "runtime.toml", "rb") as f:
        data = tomllib.load(f)
    if data.get("name") != directory.name:
        raise ValueError(f"{where}: name must equal the folder name {directory.name!r}")
    if "variant" in data:
        variants = tuple(_variant(v.get("name", str(i)), v, where) for i, v in enumerate(data["variant"]))
    else:
        variants = (_variant(data["name"], data, where),)
    return Runtime(
        name=data["name"],
        display_name=data.get("display_name", data["name"]),
        directory=directory.resolve(),
        handler_pattern=re.compile(data["handler_pattern"]),
        handler_help=data.get("handler_help", "the runtime's handler syntax"),
        variants=variants,
        example_handler=data.get("example", {}).get("handler"),
        layer_env=dict(data.get("layers", {}).get("env", {})),
    )


class RuntimeRegistry:
    """All runtimes found under a ``runtimes/`` directory, by name."""

    def __init__(self, root: Path | None = None, *, public: bool = False) -> None:
        self.root = root or data_dir("runtimes")
        self._runtimes: dict[str, Runtime] = {}
        for sub in sorted(self.root.iterdir()):
            if (sub / "runtime.toml").is_file():
                runtime = load_runtime(sub)
                runtime.public = public
                self._runtimes[sub.name] = runtime

    def get(self, name: str) -> Runtime:
        try:
            return self._runtimes[name]
        except KeyError:
            raise InvalidParameter(
                f"unknown runtime {name!r}: use one of {', '.join(sorted(self._runtimes))}"
            ) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._runtimes.values())

    def names(self) -> list[str]:
        return sorted(self._runtimes)
