"""The committed gRPC stubs must match protos/: regenerate and compare what the proto decides.

The comparison is of content, not of text: the serialized descriptor in ``fnhost_pb2.py``, the
RPCs and message types in ``fnhost_pb2_grpc.py``, the classes and fields in ``fnhost_pb2.pyi``.
Version strings and template details differ between the grpcio-tools releases the test extras
allow, and a fresh machine installs the newest; a proto changed without regenerating still fails.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "daemon" / "fnhost" / "v1"


def _descriptor(pb2: str) -> bytes:
    """The serialized FileDescriptorProto the module registers."""
    for node in ast.walk(ast.parse(pb2)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile(...) in the generated module")


def _rpcs(grpc_py: str) -> set[tuple[str, str, str]]:
    """(method path, request type, response type) of every RPC the stubs call."""
    found = re.findall(
        r"'(/fnhost\.v1\.Fnhost/\w+)',\s*request_serializer=\w+\.(\w+)\.SerializeToString,"
        r"\s*response_deserializer=\w+\.(\w+)\.FromString", grpc_py)
    assert found, "no RPCs found in the generated grpc module"
    return set(found)


def _typed_names(pyi: str) -> set[str]:
    """Every class and every name a class declares, by qualified name."""
    names: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                names.add(prefix + node.name)
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(prefix + node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(prefix + t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.FunctionDef):
                names.add(f"{prefix}{node.name}({','.join(a.arg for a in node.args.args + node.args.kwonlyargs)})")

    visit(ast.parse(pyi).body, "")
    return names


def test_stubs_are_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "fnhost/v1/fnhost.proto"], check=True)
    fresh = tmp_path / "fnhost" / "v1"
    hint = "is stale: regenerate it (see README, API)"
    assert _descriptor((fresh / "fnhost_pb2.py").read_text()) == \
        _descriptor((COMMITTED / "fnhost_pb2.py").read_text()), f"daemon/fnhost/v1/fnhost_pb2.py {hint}"
    assert _rpcs((fresh / "fnhost_pb2_grpc.py").read_text()) == \
        _rpcs((COMMITTED / "fnhost_pb2_grpc.py").read_text()), f"daemon/fnhost/v1/fnhost_pb2_grpc.py {hint}"
    assert _typed_names((fresh / "fnhost_pb2.pyi").read_text()) == \
        _typed_names((COMMITTED / "fnhost_pb2.pyi").read_text()), f"daemon/fnhost/v1/fnhost_pb2.pyi {hint}"


def test_the_comparison_sees_a_changed_proto(tmp_path: Path) -> None:
    """A field added to the proto changes every one of the three summaries."""
    protos = tmp_path / "protos" / "fnhost" / "v1"
    protos.mkdir(parents=True)
    source = (ROOT / "protos" / "fnhost" / "v1" / "fnhost.proto").read_text()
    changed = source.replace("message InvokeRequest {", "message InvokeRequest {\n  string qualifier_probe = 99;", 1)
    changed = changed.replace("service Fnhost {", "service Fnhost {\n  rpc ProbeCall(InvokeRequest) returns (InvokeResponse);", 1)
    assert "qualifier_probe" in changed and "ProbeCall" in changed
    (protos / "fnhost.proto").write_text(changed)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path / 'protos'}", f"--python_out={out}",
                    f"--pyi_out={out}", f"--grpc_python_out={out}", "fnhost/v1/fnhost.proto"], check=True)
    gen = out / "fnhost" / "v1"
    assert _descriptor((gen / "fnhost_pb2.py").read_text()) != _descriptor((COMMITTED / "fnhost_pb2.py").read_text())
    assert _rpcs((gen / "fnhost_pb2_grpc.py").read_text()) != _rpcs((COMMITTED / "fnhost_pb2_grpc.py").read_text())
    assert _typed_names((gen / "fnhost_pb2.pyi").read_text()) != _typed_names((COMMITTED / "fnhost_pb2.pyi").read_text())
