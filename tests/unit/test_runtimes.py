import pytest

from fnhost.errors import InvalidParameter, ToolchainMissing
from fnhost.control.runtimes import Runtime, RuntimeRegistry, Toolchain, Variant, substitute

REGISTRY = RuntimeRegistry()


def test_every_descriptor_loads_and_names_its_folder() -> None:
    names = REGISTRY.names()
    assert {"python", "node"} <= set(names)
    for runtime in REGISTRY:
        assert runtime.directory.name == runtime.name
        assert runtime.variants and all(v.launch_argv for v in runtime.variants)


@pytest.mark.parametrize(
    ("runtime", "good", "bad"),
    [
        ("python", ["app.handler", "pkg.mod.handler", "dir/app.handler"], ["app", "../x.h", "/abs.h", "a..b.c", "a.b."]),
        ("node", ["index.handler", "src/app.handler", "app.nested.handler"], ["index", "../x.h", "/abs.h"]),
    ],
)
def test_handler_shapes(runtime: str, good: list[str], bad: list[str]) -> None:
    rt = REGISTRY.get(runtime)
    for handler in good:
        rt.check_handler(handler)
    for handler in bad:
        with pytest.raises(InvalidParameter):
            rt.check_handler(handler)


def test_missing_toolchain_names_it_and_how_to_install(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re

    rt = Runtime(
        name="cobol", display_name="COBOL", directory=tmp_path, handler_pattern=re.compile(".*"),
        handler_help="", variants=(
            Variant(name="a", toolchains=(Toolchain("cobc", ("no-such-cobc-binary",), (), "apt-get install gnucobol"),),
                    launch_argv=("{cobc}",)),
        ),
    )
    with pytest.raises(ToolchainMissing, match=r"missing cobc \(apt-get install gnucobol\)"):
        rt.select()


def test_substitute_refuses_unknown_placeholders() -> None:
    assert substitute("{a}/{b}", {"a": "1", "b": "2"}) == "1/2"
    with pytest.raises(KeyError, match="unknown placeholder"):
        substitute("{nope}", {})
