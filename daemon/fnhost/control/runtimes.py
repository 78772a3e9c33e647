"""Runtime descriptors (``runtimes/<lang>/runtime.toml``) and what the daemon does with them.

Everything language-specific is data read from those files; nothing here names a language.
Toolchains are looked up once per daemon (at first use) so spawning a worker is a dictionary
lookup and a string substitution, never a PATH search.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ..errors import BuildFailed, InvalidParameter, ToolchainMissing
from ..execution.sandbox import executable_by_others

log = structlog.get_logger("fnhost.runtimes")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    _chosen: tuple[Variant, dict[str, str]] | None = None

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

    def values(self, **extra: str) -> dict[str, str]:
        variant, paths = self.select()
        return {**paths, "runtime_dir": str(self.directory), **extra}

    def launch(self, values: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        variant, _ = self.select()
        argv = [substitute(a, values) for a in variant.launch_argv]
        env = {k: substitute(v, values) for k, v in variant.launch_env.items()}
        return argv, env

    def build(self, code_dir: Path, build_dir: Path, handler: str, scratch: Path) -> str:
        """Run the descriptor's build step; return its output, raise BuildFailed with its tail."""
        variant, _ = self.select()
        values = self.values(
            code_dir=str(code_dir), build_dir=str(build_dir), handler=handler, memory_mb="0"
        )
        argv = [substitute(a, values) for a in variant.build_argv]
        env = {
            k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")
        }
        env.setdefault("HOME", str(scratch))
        env.update({k: substitute(v, values) for k, v in variant.build_env.items()})
        try:
            proc = subprocess.run(
                argv,
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=variant.build_timeout_s,
                start_new_session=True,
                umask=0o022,
            )
        except subprocess.TimeoutExpired as exc:
            raise BuildFailed(
                f"building {handler!r} for runtime {self.name} took longer than "
                f"{variant.build_timeout_s:.0f} s"
            ) from exc
        output = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise BuildFailed(
                f"building the function for runtime {self.name} failed "
                f"(exit status {proc.returncode}):\n{output[-4096:]}"
            )
        return output


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
    return Variant(
        name=name,
        toolchains=toolchains,
        launch_argv=tuple(launch["argv"]),
        launch_env=dict(launch.get("env", {})),
        build_argv=tuple(build.get("argv", ())),
        build_env=dict(build.get("env", {})),
        build_timeout_s=float(build.get("timeout_s", 300)),
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
