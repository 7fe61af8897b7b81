"""Build hook: generates the gRPC stubs of ferry's wire contract (the repository's
proto/ferry/v1/*.proto) with grpcio-tools into ferry_client/_proto when the package is
built. Nothing generated is committed."""

import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PACKAGE = "ferry_client._proto"


def generate(out_root: Path) -> None:
    """Runs protoc on every ferry proto; the stubs land in out_root/ferry_client/_proto."""
    from grpc_tools import protoc  # a build requirement (pyproject.toml)
    import grpc_tools

    protos = sorted(PROTO_ROOT.glob("ferry/v1/*.proto"))
    if not protos:
        raise SystemExit(
            f"no .proto files under {PROTO_ROOT}: build the package from a ferry checkout "
            "(pip install ./clients/python)"
        )
    out = out_root / "ferry_client" / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_ROOT}")
    # protoc writes absolute imports of the proto package (`from ferry.v1 import …`):
    # make them point inside this package.
    for path in out.rglob("*.py*"):
        text = path.read_text()
        fixed = re.sub(r"^from ferry\.v1 import", f"from {PACKAGE}.ferry.v1 import", text, flags=re.M)
        if fixed != text:
            path.write_text(fixed)
    for folder in [out, out / "ferry", out / "ferry" / "v1"]:
        (folder / "__init__.py").touch()


class BuildWithStubs(build_py):
    """build_py that also generates the stubs into the build folder (the wheel takes the
    whole build folder)."""

    def run(self):
        super().run()
        generate(Path(self.build_lib))


setup(cmdclass={"build_py": BuildWithStubs})
