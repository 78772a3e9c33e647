"""The committed gRPC stubs must match protos/: regenerate and compare."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stubs_are_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "fnhost/v1/fnhost.proto"], check=True)
    for name in ("fnhost_pb2.py", "fnhost_pb2.pyi", "fnhost_pb2_grpc.py"):
        fresh = (tmp_path / "fnhost" / "v1" / name).read_text()
        committed = (ROOT / "daemon" / "fnhost" / "v1" / name).read_text()
        assert fresh == committed, f"daemon/fnhost/v1/{name} is stale: regenerate it (see README, API)"
