"""The compiled router is used only when built from the router.py beside it (ccengine/acd/native.py)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccengine.acd import ROUTER, native
from ccengine.acd import router as imported

BUILT = native.extension_files(native.HERE)


def record(folder: Path, names: list[str]) -> None:
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (folder / native.RECORD).write_text("\n".join(lines) + "\n")


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A folder holding router.py, two stand-in extension files and their build record."""
    (tmp_path / "router.py").write_text("X = 1\n")
    suffix = native.EXTENSION_SUFFIXES[0]
    (tmp_path / f"router{suffix}").write_bytes(b"shim")
    (tmp_path / f"router__mypyc{suffix}").write_bytes(b"library")
    record(tmp_path, ["router.py", f"router{suffix}", f"router__mypyc{suffix}"])
    return tmp_path


def test_a_build_matching_its_record_is_used(build: Path) -> None:
    assert native.check(build, {}) == native.Choice(True, False, "compiled (mypyc)")


def test_a_build_from_an_older_router_py_is_refused(build: Path) -> None:
    (build / "router.py").write_text("X = 2\n")
    choice = native.check(build, {})
    assert (choice.compiled, choice.refused) == (False, True)
    assert "built from another router.py" in choice.note and "make setup" in choice.note


def test_a_replaced_extension_file_is_refused(build: Path) -> None:
    next(build.glob("router__mypyc*")).write_bytes(b"other library")
    choice = native.check(build, {})
    assert choice.refused and "is not the file the build recorded" in choice.note


def test_a_build_without_record_or_with_unrecorded_files_is_refused(build: Path) -> None:
    (build / f"router{native.EXTENSION_SUFFIXES[-1]}").write_bytes(b"another shim")
    assert native.check(build, {}).refused
    (build / native.RECORD).unlink()
    assert "no build record" in native.check(build, {}).note


def test_no_build_means_the_source_without_complaint(tmp_path: Path) -> None:
    (tmp_path / "router.py").write_text("X = 1\n")
    assert native.check(tmp_path, {}) == (False, False, "not compiled (make setup compiles it with mypyc)")


def test_the_source_can_be_forced(build: Path) -> None:
    assert native.check(build, {native.FORCE_PURE: "1"}).refused
    assert native.check(build, {native.FORCE_PURE: "0"}).compiled


@pytest.mark.skipif(not BUILT, reason="router not compiled (make setup compiles it)")
def test_the_compiled_router_in_this_tree_is_current_and_in_use() -> None:
    """Fails on a stale build: router.py changed after `make setup` compiled it."""
    choice = native.check(native.HERE)
    if native.FORCE_PURE in choice.note:
        pytest.skip(f"{native.FORCE_PURE} is set")
    assert choice.compiled, choice.note
    assert ROUTER.compiled and imported.COMPILED


@pytest.mark.skipif(not BUILT, reason="router not compiled (make setup compiles it)")
@pytest.mark.parametrize("edit", ["", "\n# edited after the build\n"])
def test_import_falls_back_to_the_source_when_the_build_is_stale(tmp_path: Path, edit: str) -> None:
    """End to end, on a copy of the package with the real compiled files."""
    acd = tmp_path / "ccengine" / "acd"
    acd.mkdir(parents=True)
    shutil.copy(native.HERE.parent / "__init__.py", acd.parent)
    for path in [*(native.HERE / n for n in ("__init__.py", "native.py", "router.py", native.RECORD)), *BUILT]:
        shutil.copy(path, acd)
    with (acd / "router.py").open("a") as source:
        source.write(edit)
    probe = "import ccengine.acd.router as r; print(r.COMPILED, r.__file__)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, check=True)
    compiled, file = done.stdout.split()
    if edit:
        assert (compiled, file) == ("False", str(acd / "router.py"))
        assert "built from another router.py" in done.stderr
    else:
        assert compiled == "True" and file.startswith(str(acd / "router.")) and file.endswith(".so")
        assert done.stderr == ""
