"""Section 4 of the benchmark: size of each built function and of the layer, from ``sam build``'s output.

::

    sizes = measure()          # None when .aws-sam/build is missing (run make build)
    for size in sizes: size.name, size.files, size.bytes, size.zip_bytes, size.stale

``zip_bytes`` is the size of a deflate zip of the artifact made here, as ``sam deploy`` uploads it (Lambda's
limits: 50 MB zipped per upload, 250 MB unzipped for a function and its layers). ``stale`` is set when the
sources differ from what was built.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
FUNCTIONS = {
    "IdentifyFunction": "identify",
    "AssignmentFunction": "assignment",
    "ConversionFunction": "conversion",
    "ConnectionFunction": "connection",
}
LAYER = "ForwarderLayer"
LAYER_PACKAGE = "segment_forwarder"


@dataclass(slots=True)
class PackageSize:
    """One built artifact."""

    name: str
    files: int
    bytes: int
    zip_bytes: int
    stale: bool = False
    parts: dict[str, int] = field(default_factory=dict)  # layer: bytes per top-level package


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _zip_size(directory: Path, files: list[Path]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(directory))
    return buffer.tell()


def _differs(source: Path, built: Path) -> bool:
    """True when a source file is missing from the build or has other content."""
    for path in _files(source):
        copy = built / path.relative_to(source)
        if not copy.is_file() or copy.read_bytes() != path.read_bytes():
            return True
    return False


def _measure(name: str, directory: Path) -> PackageSize:
    files = _files(directory)
    return PackageSize(name, len(files), sum(p.stat().st_size for p in files), _zip_size(directory, files))


def measure() -> list[PackageSize] | None:
    """Every function and the layer; None when there is no build."""
    if not (BUILD / LAYER).is_dir():
        return None
    sizes = []
    for name, folder in FUNCTIONS.items():
        size = _measure(name, BUILD / name)
        size.stale = _differs(ROOT / "functions" / folder, BUILD / name)
        sizes.append(size)
    layer = _measure(LAYER, BUILD / LAYER)
    site = BUILD / LAYER / "python"
    layer.stale = _differs(ROOT / "layers" / "forwarder" / LAYER_PACKAGE, site / LAYER_PACKAGE)
    for entry in sorted(site.iterdir()):
        if entry.name.endswith((".dist-info", ".data")):
            key = "(package metadata)"
        elif entry.is_dir():
            key = entry.name
        else:
            key = entry.name
        total = entry.stat().st_size if entry.is_file() else sum(p.stat().st_size for p in _files(entry))
        layer.parts[key] = layer.parts.get(key, 0) + total
    sizes.append(layer)
    return sizes
