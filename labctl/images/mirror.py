"""Which Debian mirror to build the image from: the host's own apt configuration.

Never a hard-coded host: the entry for the image's suite and component is taken from
``/etc/apt/sources.list`` (one-line format) and ``/etc/apt/sources.list.d/`` (``.list``
one-line files and deb822 ``.sources`` files), in the order apt reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labctl.errors import LabError

SUPPORTED_SCHEMES = ("http://", "https://", "file:/")


@dataclass(frozen=True)
class SourceEntry:
    types: tuple[str, ...]
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None  # a keyring path, when the entry names one
    origin: str  # file (and line) it came from, for messages


def _split_options(rest: str) -> tuple[dict[str, str], str]:
    """`[a=b c=d] uri ...` -> ({'a': 'b', 'c': 'd'}, 'uri ...')."""
    rest = rest.strip()
    if not rest.startswith("["):
        return {}, rest
    end = rest.find("]")
    if end < 0:
        return {}, ""
    options = {}
    for item in rest[1:end].split():
        key, _, value = item.partition("=")
        options[key.lower()] = value
    return options, rest[end + 1 :]


def parse_one_line(text: str, origin: str) -> list[SourceEntry]:
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        options, rest = _split_options(rest)
        words = rest.split()
        if kind not in ("deb", "deb-src") or len(words) < 2:
            continue
        entries.append(
            SourceEntry(
                types=(kind,),
                uri=words[0],
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by") or None,
                origin=f"{origin}:{number}",
            )
        )
    return entries


def _deb822_paragraphs(text: str) -> list[tuple[int, dict[str, str]]]:
    paragraphs: list[tuple[int, dict[str, str]]] = []
    fields: dict[str, str] = {}
    start = 0
    key = None
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                paragraphs.append((start, fields))
            fields, key = {}, None
            continue
        if raw[0] in " \t" and key:  # continuation line
            fields[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        if not fields:
            start = number
        key = name.strip().lower()
        fields[key] = value.strip()
    if fields:
        paragraphs.append((start, fields))
    return paragraphs


def parse_deb822(text: str, origin: str) -> list[SourceEntry]:
    entries = []
    for start, fields in _deb822_paragraphs(text):
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        signed_by = fields.get("signed-by", "").strip()
        # A multi-line Signed-By is an inline key, not a path debootstrap can use.
        keyring = signed_by if signed_by and "\n" not in signed_by else None
        for uri in fields.get("uris", "").split():
            entries.append(
                SourceEntry(
                    types=tuple(fields.get("types", "").split()),
                    uri=uri,
                    suites=tuple(fields.get("suites", "").split()),
                    components=tuple(fields.get("components", "").split()),
                    signed_by=keyring,
                    origin=f"{origin}:{start}",
                )
            )
    return entries


def pick_mirror(entries: list[SourceEntry], suite: str, component: str) -> SourceEntry | None:
    for entry in entries:
        if (
            "deb" in entry.types
            and suite in entry.suites
            and component in entry.components
            and entry.uri.startswith(SUPPORTED_SCHEMES)
        ):
            return entry
    return None


def apt_source_files(apt_dir: Path) -> list[Path]:
    """apt's reading order: sources.list, then sources.list.d/ by name."""
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def read_sources(apt_dir: Path) -> list[SourceEntry]:
    entries: list[SourceEntry] = []
    for path in apt_source_files(apt_dir):
        try:
            text = path.read_text()
        except OSError as exc:
            raise LabError(f"cannot read apt source file {path}: {exc}") from exc
        parse = parse_deb822 if path.suffix == ".sources" else parse_one_line
        entries += parse(text, str(path))
    return entries


def find_mirror(suite: str, component: str, apt_dir: Path = Path("/etc/apt")) -> SourceEntry:
    """The host's apt entry for ``suite`` + ``component``, or a clear error."""
    entry = pick_mirror(read_sources(apt_dir), suite, component)
    if entry is None:
        raise LabError(
            f"no apt source for Debian '{suite}' '{component}' in {apt_dir}/sources.list or "
            f"{apt_dir}/sources.list.d/: the base image is built from the host's configured "
            f"mirror; add an entry for '{suite} {component}' (http, https or file URI)"
        )
    return entry
