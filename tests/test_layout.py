"""tests/ mirrors the code folder by folder (as mitmproxy's test/filename_matching.py
does file by file): the tests of shadow/replay/ are in tests/replay/, those of
shadow/replay/sources/ in tests/replay/sources/, and so on, so the next maintainer finds
them without searching. The few exceptions are listed, each with its reason."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: test folders of what is not a Python package (folder -> what it tests)
NOT_CODE = {
    "alerts": "rules/alerts.yml, through promtool",
    "deploy": "the Helm chart and the Dockerfile",
}
#: packages without a test folder of their own (package -> where their tests are)
TESTED_ELSEWHERE = {
    "shadow/proxy/raw": "tests/proxy: every request-path test runs on both engines",
}
#: test files at the top of tests/ that name no module of shadow/ (file -> what it checks)
TOP_LEVEL = {
    "test_import_cycles.py": "the import graph of the whole package",
    "test_layout.py": "this layout",
}


def code_packages() -> set[str]:
    """shadow/... and normalizers/... folders holding Python modules, as relative paths."""
    packages = set()
    for top in ("shadow", "normalizers"):
        for init in (ROOT / top).rglob("__init__.py"):
            packages.add(init.parent.relative_to(ROOT).as_posix())
    return packages


def folders_of_tests() -> set[str]:
    """Folders under tests/ that hold test modules, as relative paths below tests/."""
    return {path.parent.relative_to(TESTS).as_posix() for path in TESTS.rglob("test_*.py")} - {"."}


def mirrored(folder: str) -> str:
    """The code folder a test folder mirrors: tests/replay -> shadow/replay; tests/normalizers -> normalizers."""
    return folder if folder.split("/")[0] == "normalizers" else f"shadow/{folder}"


def test_every_test_folder_mirrors_a_code_folder() -> None:
    packages = code_packages()
    strays = sorted(folder for folder in folders_of_tests()
                    if mirrored(folder) not in packages and folder.split("/")[0] not in NOT_CODE)
    assert not strays, f"test folders with no shadow/ folder of that name (move them, or list them): {strays}"


def test_every_code_folder_has_its_test_folder() -> None:
    tested = {mirrored(folder) for folder in folders_of_tests()}
    untested = sorted(package for package in code_packages() - tested - TESTED_ELSEWHERE.keys()
                      if package != "shadow")
    assert not untested, f"packages without tests/<same path>/ (add it, or list where they are tested): {untested}"


def test_top_level_test_files_name_a_top_level_module() -> None:
    modules = {path.stem for path in (ROOT / "shadow").glob("*.py")}
    strays = sorted(path.name for path in TESTS.glob("test_*.py")
                    if path.name not in TOP_LEVEL and not any(path.stem.startswith(f"test_{name}") for name in modules))
    assert not strays, f"tests/test_*.py that name no shadow/<module>.py (move them into their folder): {strays}"


def test_the_listed_exceptions_still_exist() -> None:
    """An exception that no longer applies comes off its list."""
    assert all((TESTS / folder).is_dir() for folder in NOT_CODE)
    assert all((ROOT / package / "__init__.py").is_file() for package in TESTED_ELSEWHERE)
    assert all((TESTS / name).is_file() for name in TOP_LEVEL)
