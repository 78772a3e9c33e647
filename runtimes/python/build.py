"""fnhost's build step for Python functions (runtime.toml ``[build]``), run at deploy.

    python -s build.py CODE_DIR OUT_DIR [LAYERS_SOURCE LAYERS_DIR]

Compiles every module of the function's code, then of its layers (their ``python/`` tree, read
at LAYERS_SOURCE on the host, compiled for LAYERS_DIR, where its workers see them: ``/opt`` in a
mount namespace of their own), to bytecode, into ``OUT_DIR/bytecode``: the tree
``sys.pycache_prefix`` would give it (the source's absolute path as workers see it, then
``name.cpython-311.pyc``), each stamped with a hash of its source that the worker checks at
import: code is read where it is, and a module changed there after the deploy is compiled from
its source, never run stale (a timestamp misses an edit of the same size in the same second). A
worker imports those modules from there (bootstrap.use_built_bytecode) instead of compiling them
on every cold start: code and layers are read-only to workers, so without this nothing could
ever cache them, as on Lambda.

A module that does not compile is left out, silently: the worker then compiles it from its
source and reports its error at INIT as Lambda does (``Runtime.UserCodeSyntaxError``), rather
than the deploy failing. So is what this step must not spend the deploy on (its limits would
fail the deploy where the function would have run): a source over MAX_SOURCE_BYTES, modules past
MAX_MODULES, a directory more than MAX_DEPTH deep (counting its absolute path), anything not a
regular file, and whatever is left when TIME_BUDGET_S has passed; the function's own code comes
first. Runs as the function's own uid with its workers' limits (a build
is untrusted code at work); it reads the code and the layers and writes nothing outside OUT_DIR.
"""

import importlib.util
import os
import py_compile
import stat
import sys
import time

BYTECODE_DIR = "bytecode"  # under the build directory; bootstrap.py reads the same name
MAX_SOURCE_BYTES = 2 * 1024 * 1024  # the compiler takes tens of times a source's size: within [build] memory_mb
MAX_MODULES = 50_000  # a build's output is refused past 100,000 entries (runtimes/README.md)
TIME_BUDGET_S = 60.0  # [build] timeout_s is 120
# The bytecode's directories mirror each source's absolute path under OUT_DIR/bytecode, and the
# daemon refuses a build's output nested 64 directories deep (runtimes/README.md, "Builds").
MAX_DEPTH = 60


def build(code_dir, out_dir, layers=None):
    """Compile what compiles of ``code_dir`` and, with ``layers`` (where the build reads them,
    where workers see them), of their python/ tree; return (compiled, skipped) counts."""
    sys.pycache_prefix = os.path.join(out_dir, BYTECODE_DIR)
    trees = [(code_dir, code_dir)]
    if layers is not None:
        source, seen = layers
        trees.append((os.path.join(source, "python"), os.path.join(seen, "python")))
    compiled = skipped = 0
    stop_at = time.monotonic() + TIME_BUDGET_S
    for tree, seen_tree in trees:
        for root, dirs, files in os.walk(tree):  # symbolic links to directories are not followed
            too_deep = len((seen_tree + root[len(tree):]).split(os.sep)) > MAX_DEPTH
            dirs[:] = [] if too_deep else [d for d in dirs if d != "__pycache__"]
            for name in files:
                if not name.endswith(".py"):
                    continue
                if too_deep:
                    skipped += 1
                    continue
                source = os.path.join(root, name)
                seen = seen_tree + source[len(tree):]  # the path the worker imports it from
                try:
                    st = os.stat(source)  # a FIFO or a device would block the read, or never end it
                    if (not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_BYTES or compiled >= MAX_MODULES
                            or time.monotonic() > stop_at):
                        skipped += 1
                        continue
                    py_compile.compile(source, cfile=importlib.util.cache_from_source(seen), dfile=seen,
                                       doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
                    compiled += 1
                except (py_compile.PyCompileError, OSError, ValueError, RecursionError, MemoryError):
                    skipped += 1  # unreadable, or does not compile: the worker says why at INIT
    return compiled, skipped


def main():
    args = sys.argv[1:]
    if len(args) not in (2, 4):
        sys.exit("usage: build.py CODE_DIR OUT_DIR [LAYERS_SOURCE LAYERS_DIR]")
    code_dir, out_dir = (os.path.abspath(p) for p in args[:2])
    layers = (os.path.abspath(args[2]), os.path.abspath(args[3])) if len(args) == 4 and args[2] else None
    compiled, skipped = build(code_dir, out_dir, layers)
    print(f"fnhost: {compiled} modules compiled to bytecode" + (f", {skipped} left to compile at INIT" if skipped else ""))


if __name__ == "__main__":
    main()
