"""Install a pinned uv from PyPI with the standard library only.

The Makefile's fallback for a Python without pip: read PyPI's simple index for uv (the
PEP 503 page pip itself reads), pick the wheel for this platform, check its SHA-256
against the index's digest, and unpack the `uv` binary into DEST/bin.
Usage: python3 .ci/fetch_uv.py VERSION DEST
"""

from __future__ import annotations

import hashlib
import io
import platform
import re
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path


def wheel_tags() -> list[str]:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if sys.platform.startswith("linux"):
        return [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"musllinux_1_1_{arch}"]
    if sys.platform == "darwin":
        return ["macosx_11_0_arm64" if arch == "aarch64" else "macosx_10_12_x86_64"]
    raise SystemExit(f"fetch_uv: no uv wheel known for {sys.platform}/{machine}")


def main(version: str, dest: Path) -> None:
    with urllib.request.urlopen("https://pypi.org/simple/uv/", timeout=60) as response:
        index = response.read().decode("utf-8")
    links = re.findall(r'<a[^>]*href="([^"#]+)#sha256=([0-9a-f]{64})"[^>]*>([^<]+)</a>', index)
    wanted = wheel_tags()
    chosen = next(
        (
            (url, sha256, name)
            for url, sha256, name in links
            if name.startswith(f"uv-{version}-") and any(tag in name for tag in wanted)
        ),
        None,
    )
    if chosen is None:
        raise SystemExit(f"fetch_uv: uv {version} has no wheel for {wanted}")
    url, expected, name = chosen
    with urllib.request.urlopen(url, timeout=300) as response:
        wheel = response.read()
    if hashlib.sha256(wheel).hexdigest() != expected:
        raise SystemExit(f"fetch_uv: {name} does not match the index's SHA-256")
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        binary = archive.read(f"uv-{version}.data/scripts/uv")
    target = dest / "bin" / "uv"
    target.write_bytes(binary)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"fetch_uv: installed uv {version} from {name} into {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]))
