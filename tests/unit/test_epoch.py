"""storage.epoch: a change counter shared by processes through one file."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from mistral_gateway.storage.epoch import FileEpoch


def test_creation_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "tokens.epoch"
    epoch = FileEpoch(path)
    assert path.is_file()
    assert epoch.current() != 0


def test_stable_until_bumped(tmp_path: Path) -> None:
    epoch = FileEpoch(tmp_path / "e")
    before = epoch.current()
    assert epoch.current() == before
    epoch.bump()
    after = epoch.current()
    assert after != before
    assert epoch.current() == after


def test_opening_an_existing_file_does_not_bump(tmp_path: Path) -> None:
    first = FileEpoch(tmp_path / "e")
    value = first.current()
    second = FileEpoch(tmp_path / "e")
    assert second.current() == value == first.current()


def test_instances_see_each_others_bumps(tmp_path: Path) -> None:
    a = FileEpoch(tmp_path / "e")
    b = FileEpoch(tmp_path / "e")
    before = a.current()
    b.bump()
    assert a.current() != before
    assert a.current() == b.current()


def test_rapid_bumps_are_all_distinct(tmp_path: Path) -> None:
    epoch = FileEpoch(tmp_path / "e")
    seen = [epoch.current()]
    for _ in range(50):
        epoch.bump()
        seen.append(epoch.current())
    assert all(x != y for x, y in itertools.pairwise(seen))


def test_bump_leaves_no_temporary_files(tmp_path: Path) -> None:
    epoch = FileEpoch(tmp_path / "e")
    epoch.bump()
    epoch.bump()
    assert [p.name for p in tmp_path.iterdir()] == ["e"]


def test_missing_file_reads_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "e"
    epoch = FileEpoch(path)
    path.unlink()
    assert epoch.current() == 0
    epoch.bump()
    assert epoch.current() != 0


def test_bump_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "e"
    epoch = FileEpoch(path)
    before = epoch.current()
    code = "import sys; from pathlib import Path; from mistral_gateway.storage.epoch import FileEpoch; " \
           "FileEpoch(Path(sys.argv[1])).bump()"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=30)
    assert epoch.current() != before
