"""control/layers.py on a real registry database and store (no daemon): numbering, the rules of
a function's list, merging later over earlier, read-only modes, what is kept."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from fnhost.control.layers import LayerStore, layer_name, merged_key, parse_version_arn
from fnhost.control.registry import Registry
from fnhost.errors import InvalidParameter, ResourceNotFound


def _zip(files: dict[str, str], executable: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            z.writestr(info, text)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    registry = Registry(tmp_path / "state")
    yield LayerStore(registry, "eu-west-1", "123456789012")
    registry.close()


def _publish(store: LayerStore, name: str, files: dict[str, str], **kw: object):
    return store.publish(name, store.registry.store_zip(_zip(files, **kw)))


def test_arns_and_names() -> None:
    assert parse_version_arn("arn:aws:lambda:eu-west-1:123456789012:layer:deps:3") == (
        "eu-west-1", "123456789012", "deps", 3)
    for bad in ("arn:aws:lambda:eu-west-1:123456789012:layer:deps", "deps:3", ""):
        with pytest.raises(InvalidParameter):
            parse_version_arn(bad)
    assert layer_name("arn:aws:lambda:eu-west-1:123456789012:layer:deps") == "deps"
    with pytest.raises(InvalidParameter):
        layer_name("no spaces")


def test_numbers_are_never_reused_and_deleted_versions_leave_the_listings(store: LayerStore) -> None:
    one = _publish(store, "deps", {"a": "1"})
    two = _publish(store, "deps", {"a": "2"})
    assert (one.version, two.version) == (1, 2)
    assert one.arn == "arn:aws:lambda:eu-west-1:123456789012:layer:deps:1"
    store.delete("deps", 2)
    assert _publish(store, "deps", {"a": "3"}).version == 3
    assert [v.version for v in store.versions("deps")] == [3, 1]
    with pytest.raises(ResourceNotFound):
        store.get("deps", 2)
    assert [v.version for v in store.latest()] == [3]


def test_a_functions_list_follows_lambdas_rules(store: LayerStore) -> None:
    arns = [_publish(store, f"l{i}", {"f": str(i)}).arn for i in range(6)]
    with pytest.raises(InvalidParameter, match="more than 5"):
        store.resolve(arns)
    again = _publish(store, "l0", {"f": "again"}).arn
    with pytest.raises(InvalidParameter, match="same layer"):
        store.resolve([arns[0], again])
    with pytest.raises(InvalidParameter, match="does not exist"):
        store.resolve(["arn:aws:lambda:us-east-1:123456789012:layer:l0:1"])  # another region's
    store.delete("l1", 1)
    with pytest.raises(InvalidParameter, match="does not exist"):
        store.resolve([arns[1]])
    assert [v.name for v in store.resolve([arns[1]], kept=[arns[1]])] == ["l1"]  # a function that had it


def test_merging_puts_later_layers_over_earlier_ones_read_only(store: LayerStore) -> None:
    first = _publish(store, "first", {"python/shared.py": "first", "python/pkg": "a file",
                                      "bin/tool": "#!/bin/sh\n", "only_first": "1"}, executable=("bin/tool",))
    second = _publish(store, "second", {"python/shared.py": "second", "python/pkg/__init__.py": "a dir"})
    merged = store.merged_dir([first, second])
    assert (merged / "python" / "shared.py").read_text() == "second"
    assert (merged / "python" / "pkg" / "__init__.py").read_text() == "a dir"  # a directory over a file
    assert (merged / "only_first").read_text() == "1"
    assert stat.S_IMODE((merged / "bin" / "tool").stat().st_mode) == 0o555
    assert stat.S_IMODE((merged / "python" / "shared.py").stat().st_mode) == 0o444
    if os.geteuid() == 0:
        assert stat.S_IMODE((merged / "python").stat().st_mode) == 0o555
    assert merged.name == merged_key([first, second]) != merged_key([second, first])
    assert store.merged_dir([first, second]) == merged  # made once per ordered list
    other = store.merged_dir([second, first])
    assert (other / "python" / "shared.py").read_text() == "first"
    assert (other / "python" / "pkg").is_file()  # a file over a directory


def test_what_is_kept_for_the_functions_using_a_deleted_version(store: LayerStore) -> None:
    used = _publish(store, "used", {"a": "used"})
    unused = _publish(store, "unused", {"a": "unused"})
    merged = store.merged_dir([used])
    store.delete("used", 1)
    store.delete("unused", 1)
    kept = store.referenced([[used.arn], []])
    assert used.location.name in kept and merged.name in kept
    assert unused.location.name not in kept
    assert store.referenced([]) == set()


def test_opt_is_the_layers_an_empty_directory_or_the_hosts_own(tmp_path: Path) -> None:
    """Lambda's /opt in a worker's namespace: its layers, else nothing; but never hidden from a
    runtime whose interpreter is installed there (PowerShell lives in /opt/microsoft)."""
    from fnhost.execution import isolation

    def opt_args(opt: str | None) -> list[str]:
        args = isolation.wrap(["/bin/true"], isolation.View((), (), (), 1, opt=opt), 65534, 65534)
        return [args[i - 1] + " " + a for i, a in enumerate(args) if a == "/opt"]

    assert opt_args(str(tmp_path)) == [f"{tmp_path} /opt"]
    if Path("/opt").is_dir():
        assert opt_args("") == ["--tmpfs /opt", "--remount-ro /opt"]
    assert opt_args(None) == []


def test_a_runtime_knows_whether_its_toolchain_lives_under_a_directory(tmp_path: Path) -> None:
    from fnhost.control.runtimes import RuntimeRegistry

    python = RuntimeRegistry().get("python")
    interpreter = os.path.realpath(python.select()[1]["python"])
    assert python.installed_under(str(Path(interpreter).parent))
    assert not python.installed_under(str(tmp_path))
