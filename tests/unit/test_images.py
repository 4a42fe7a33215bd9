"""Image tags and the host's apt mirror: pure functions, no Docker."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.runtime.images import IMAGES_DIR, base_tag, find_apt_mirror, image_tag

BASE = "debian:bookworm-slim"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    (node / "sub").mkdir(parents=True)
    (node / "Dockerfile").write_text("FROM ${BASE}\n")
    (node / "sub" / "tool.py").write_text("print('hi')\n")
    return tmp_path


def test_tag_shape_and_stability(images: Path) -> None:
    tag = image_tag("node", BASE, images)
    assert re.fullmatch(r"labkit/node:[0-9a-f]{12}", tag)
    assert image_tag("node", BASE, images) == tag


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "Dockerfile").write_text("FROM ${BASE}\nRUN true\n"),  # content
        lambda d: (d / "sub" / "tool.py").rename(d / "sub" / "other.py"),  # a path
        lambda d: (d / "new.txt").write_text(""),  # an added (even empty) file
        lambda d: (d / "sub" / "tool.py").unlink(),  # a removed file
    ],
)
def test_tag_changes_with_the_folder(images: Path, change: Callable[[Path], object]) -> None:
    before = image_tag("node", BASE, images)
    change(images / "node")
    assert image_tag("node", BASE, images) != before


def test_tag_changes_with_the_base(images: Path) -> None:
    assert image_tag("node", BASE, images) != image_tag("node", "labkit/base:x", images)


def test_tag_ignores_pycache(images: Path) -> None:
    before = image_tag("node", BASE, images)
    (images / "node" / "__pycache__").mkdir()
    (images / "node" / "__pycache__" / "tool.cpython-311.pyc").write_bytes(b"\0")
    assert image_tag("node", BASE, images) == before


def test_content_is_not_confused_with_paths(tmp_path: Path) -> None:
    # "a" containing "bc" must not hash like "ab" containing "c".
    (tmp_path / "one" / "node").mkdir(parents=True)
    (tmp_path / "two" / "node").mkdir(parents=True)
    (tmp_path / "one" / "node" / "a").write_text("bc")
    (tmp_path / "two" / "node" / "ab").write_text("c")
    assert image_tag("node", BASE, tmp_path / "one") != image_tag("node", BASE, tmp_path / "two")


def test_real_node_image_folder_hashes() -> None:
    assert (IMAGES_DIR / "node" / "Dockerfile").is_file()
    assert image_tag("node", BASE).startswith("labkit/node:")


def test_base_tag() -> None:
    assert re.fullmatch(r"labkit/base:bookworm-[0-9a-f]{12}", base_tag())


# --- apt sources -------------------------------------------------------------


def write(apt: Path, name: str, text: str) -> None:
    path = apt / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_sources_means_no_mirror(tmp_path: Path) -> None:
    assert find_apt_mirror("bookworm", tmp_path) is None


def test_one_line_format(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list",
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n",
    )
    assert find_apt_mirror("bookworm", tmp_path) == "http://mirror.example/debian/"


def test_deb822_format(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        "Types: deb\n"
        "URIs: http://off.example/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
        "\n"
        "Types: deb-src deb\n"
        "# a comment inside the stanza\n"
        "URIs: http://deb.example/debian http://second.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By:\n"
        " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
        " .\n"
        " mQINBF...\n"
        "\n"
        "Types: deb\n"
        "URIs: http://deb.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n",
    )
    assert find_apt_mirror("bookworm", tmp_path) == "http://deb.example/debian"


def test_other_suites_and_releases_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "sources.list", "deb http://mirror.example/debian trixie main\n")
    write(
        tmp_path, "sources.list.d/sdk.list", "deb https://sdk.example/apt cloud-sdk-bookworm main\n"
    )
    write(tmp_path, "sources.list.d/cd.list", "deb cdrom:[Debian 12]/ bookworm main\n")
    assert find_apt_mirror("bookworm", tmp_path) is None


def test_debian_archive_preferred_over_third_party(tmp_path: Path) -> None:
    # A third-party repository that also names its suite "bookworm" comes first...
    write(tmp_path, "sources.list", "deb https://vendor.example/apt bookworm main\n")
    write(
        tmp_path,
        "sources.list.d/z.sources",
        "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n",
    )
    # ...but the Debian archive layout wins.
    assert find_apt_mirror("bookworm", tmp_path) == "http://m.example/debian"


def test_files_read_in_apt_order(tmp_path: Path) -> None:
    write(tmp_path, "sources.list.d/b.list", "deb http://b.example/debian bookworm main\n")
    write(tmp_path, "sources.list.d/a.list", "deb http://a.example/debian bookworm main\n")
    write(tmp_path, "sources.list.d/0.list.disabled", "deb http://0.example/debian bookworm main\n")
    assert find_apt_mirror("bookworm", tmp_path) == "http://a.example/debian"
    write(tmp_path, "sources.list", "deb http://main.example/debian bookworm main\n")
    assert find_apt_mirror("bookworm", tmp_path) == "http://main.example/debian"
