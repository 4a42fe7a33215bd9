"""The images labkit runs: the node image, built FROM a Debian base.

Tags are content-addressed (`labkit/<name>:<12 hex>` over the image folder and
the base reference), so a changed Dockerfile or script gives a new tag and an
unchanged one is never rebuilt.

The base is `debian:bookworm-slim` where it is present or can be pulled. On a
host that reaches no container registry but reaches a Debian package mirror,
it is made locally with debootstrap (minbase) from the mirror the host's own
apt uses, and imported as `labkit/base:bookworm-<hash>`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
from docker import DockerClient

from labkit.errors import LabkitError

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
PUBLIC_BASE = "debian:bookworm-slim"
BASE_SUITE = "bookworm"
BASE_VARIANT = "minbase"
BASE_INCLUDE = "ca-certificates"  # so that apt in the image also works with an https mirror
BASE_RECIPE_VERSION = "1"  # bump when the debootstrap recipe below changes
PULL_TIMEOUT = float(os.environ.get("LABKIT_PULL_TIMEOUT", "120"))  # seconds
IMAGE_LABEL = "labkit.image"

Progress = Callable[[str], None] | None


class ImageError(LabkitError):
    """An image cannot be found, pulled or built; the message says what to do."""


# --- decide (pure) ---------------------------------------------------------


def image_tag(name: str, base: str, images_dir: Path = IMAGES_DIR) -> str:
    """`labkit/<name>:<hash>` over every file (path + content) of images/<name>/ and the base."""
    folder = images_dir / name
    digest = hashlib.sha256()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        content = path.read_bytes()
        # Length-prefixed, so that no two different trees hash the same byte stream.
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(len(content).to_bytes(8, "big") + content)
    digest.update(b"base\0" + base.encode())
    return f"labkit/{name}:{digest.hexdigest()[:12]}"


def base_tag() -> str:
    """The tag of the locally built base: a hash of the debootstrap recipe."""
    recipe = "\0".join([BASE_SUITE, BASE_VARIANT, BASE_INCLUDE, BASE_RECIPE_VERSION])
    return f"labkit/base:{BASE_SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(uris, suites, components) of the `deb` lines of a sources.list file."""
    for line in text.splitlines():
        match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)", line.split("#", 1)[0])
        if match:
            yield [match[1]], [match[2]], match[3].split()


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(uris, suites, components) of the enabled `deb` stanzas of a .sources file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:  # continuation line (e.g. an inline Signed-By key)
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if (
            "deb" in fields.get("types", "").split()
            and fields.get("enabled", "yes").lower() != "no"
        ):
            yield (
                fields.get("uris", "").split(),
                fields.get("suites", "").split(),
                fields.get("components", "").split(),
            )


def find_apt_mirror(suite: str = BASE_SUITE, apt_dir: Path = Path("/etc/apt")) -> str | None:
    """The first URI the host's apt uses for `suite` of Debian (None: let debootstrap pick).

    Files are read in apt's order: sources.list, then sources.list.d/ by name.
    Third-party repositories sometimes publish a suite named like the release
    too, so a URI ending in /debian (the archive's layout) is preferred.
    """
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    candidates: list[str] = []
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        parse = _deb822_entries if path.suffix == ".sources" else _one_line_entries
        for uris, suites, components in parse(path.read_text(errors="replace")):
            if suite in suites and "main" in components:
                candidates += [u for u in uris if u.startswith(("http://", "https://", "file:/"))]
    debian = [u for u in candidates if u.rstrip("/").endswith("/debian")]
    return next(iter(debian + candidates), None)


# --- do (effects) -----------------------------------------------------------


def _exists(client: DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _say(progress: Progress, line: str) -> None:
    if progress:
        progress(line)


def _try_pull(client: DockerClient, ref: str, progress: Progress) -> bool:
    """Pull `ref`, giving up after PULL_TIMEOUT s (the SDK's pull itself has no timeout)."""
    failure: list[str] = []
    done = threading.Event()

    def pull() -> None:
        try:
            repository, _, tag = ref.partition(":")
            client.images.pull(repository, tag=tag or "latest")
        except (docker.errors.DockerException, OSError) as error:
            # An APIError's explanation is the engine's reason (e.g. "no such host").
            reason = getattr(error, "explanation", None) or str(error) or type(error).__name__
            failure.append(str(reason).splitlines()[0])
        done.set()

    _say(progress, f"pulling {ref}")
    threading.Thread(target=pull, daemon=True).start()
    if not done.wait(PULL_TIMEOUT):
        failure.append(f"no answer after {PULL_TIMEOUT:.0f} s")
    if failure:
        _say(progress, f"cannot pull {ref}: {failure[0]}")
    return not failure


def _resolve_base(client: DockerClient, *, fetch: bool, progress: Progress = None) -> str | None:
    """The base reference; with fetch=False, only what is already there (no pull, no build)."""
    if os.environ.get("LABKIT_BASE_IMAGE"):
        return os.environ["LABKIT_BASE_IMAGE"]
    if _exists(client, PUBLIC_BASE):
        return PUBLIC_BASE
    if _exists(client, base_tag()):
        return base_tag()
    if not fetch:
        return None
    if _try_pull(client, PUBLIC_BASE, progress):
        return PUBLIC_BASE
    _debootstrap_base(client, base_tag(), progress)
    return base_tag()


def ensure_base(client: DockerClient, *, progress: Progress = None) -> str:
    """The base image reference to build FROM, pulling or making it if needed.

    Order: $LABKIT_BASE_IMAGE; debian:bookworm-slim if present; the local
    debootstrap base if present; pull debian:bookworm-slim; make the local base.
    """
    base = _resolve_base(client, fetch=True, progress=progress)
    assert base is not None  # fetch=True either returns a reference or raises
    return base


def _unmount_under(root: Path) -> None:
    """Unmount what a failed debootstrap left mounted (proc, sys...) before deleting."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def _debootstrap_base(client: DockerClient, tag: str, progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError(
            f"cannot pull {PUBLIC_BASE} and `debootstrap` is not installed: install it "
            "(Debian/Ubuntu: apt-get install debootstrap) so labkit can make a local base, "
            f"or load {PUBLIC_BASE} into Docker, or set LABKIT_BASE_IMAGE to an image that exists"
        )
    if os.geteuid() != 0:
        raise ImageError(
            f"cannot pull {PUBLIC_BASE}; making a local base with debootstrap needs root"
        )
    mirror = find_apt_mirror()
    tmp = Path(tempfile.mkdtemp(prefix="labkit-base-", dir="/var/tmp"))  # /tmp may be noexec/nodev
    try:
        command = [
            "debootstrap",
            f"--variant={BASE_VARIANT}",
            f"--include={BASE_INCLUDE}",
            BASE_SUITE,
            str(tmp),
        ]
        command += [mirror] if mirror else []
        _say(progress, f"making {tag}: {' '.join(command)}")
        tail: deque[str] = deque(maxlen=20)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                _say(progress, line.rstrip())
        if proc.returncode != 0:
            raise ImageError(f"debootstrap failed (exit {proc.returncode}):\n" + "\n".join(tail))
        # The image runs `apt-get update` anyway: drop the package lists and caches.
        for leftover in ("var/lib/apt/lists", "var/cache/apt"):
            for path in (tmp / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        _say(progress, f"importing {tag}")
        repository, _, version = tag.partition(":")
        with subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(tmp), "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            assert tar.stdout is not None
            stream = tar.stdout
            # A generator (no length): requests sends it chunked, so the rootfs is never in memory.
            client.api.import_image_from_data(
                iter(lambda: stream.read(1 << 20), b""),
                repository=repository,
                tag=version,
                changes=[f"LABEL {IMAGE_LABEL}=base", 'CMD ["bash"]'],
            )
        if tar.returncode != 0 or not _exists(client, tag):
            raise ImageError(
                f"importing the debootstrap tree as {tag} failed (tar exit {tar.returncode})"
            )
    finally:
        _unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def build_image(
    client: DockerClient, name: str = "node", *, force: bool = False, progress: Progress = None
) -> str:
    """Build images/<name>/ (unless its tag exists), tag it :latest too, return the tag."""
    context = IMAGES_DIR / name
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile in {context}")
    base = ensure_base(client, progress=progress)
    tag = image_tag(name, base)
    if force or not _exists(client, tag):
        _say(progress, f"building {tag} FROM {base}")
        tail: deque[str] = deque(maxlen=20)
        try:
            for chunk in client.api.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE": base},
                labels={IMAGE_LABEL: name},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            ):
                for line in str(chunk.get("stream") or chunk.get("status") or "").splitlines():
                    if line.strip():
                        tail.append(line.rstrip())
                        _say(progress, line.rstrip())
                if "error" in chunk:
                    raise ImageError(
                        f"building {tag} failed: {chunk['error'].strip()}\n" + "\n".join(tail)
                    )
        except docker.errors.APIError as error:
            raise ImageError(f"building {tag} failed: {error}\n" + "\n".join(tail)) from error
        if not _exists(client, tag):
            raise ImageError(f"building {tag} ended without an image\n" + "\n".join(tail))
    else:
        _say(progress, f"{tag} is up to date")
    client.api.tag(tag, f"labkit/{name}", "latest")
    return tag


def node_image(client: DockerClient) -> str:
    """The node image tag for the current inputs; an error says how to build it if missing."""
    base = _resolve_base(client, fetch=False)
    tag = image_tag("node", base) if base else None
    if tag is None or not _exists(client, tag):
        raise ImageError(
            f"the node image {tag or 'labkit/node:<hash>'} is not built for the current "
            "images/node/ and base: run `labkit images build`"
        )
    return tag
