"""Mirror discovery from the host's apt configuration (deb822 and one-line formats)."""

from __future__ import annotations

import pytest

from labctl.errors import LabError
from labctl.images.mirror import (
    find_mirror,
    parse_deb822,
    parse_one_line,
    pick_mirror,
)

pytestmark = pytest.mark.unit

DEB822 = """\
Types: deb
# a comment line inside the paragraph
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# comment
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://one.example.org/debian bookworm main non-free
deb http://two.example.org/debian bookworm-backports main  # trailing comment
"""


def test_deb822_paragraphs_become_entries():
    entries = parse_deb822(DEB822, "debian.sources")
    assert [e.uri for e in entries] == [
        "http://mirror.example.org/debian",
        "http://security.example.org/debian-security",
    ]
    first = entries[0]
    assert first.suites == ("bookworm", "bookworm-updates")
    assert first.components == ("main", "contrib")
    assert first.signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert first.origin == "debian.sources:1"


def test_deb822_disabled_entries_and_inline_keys():
    text = (
        "Enabled: no\nTypes: deb\nURIs: http://off.example.org/d\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://on.example.org/d\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
    )
    entries = parse_deb822(text, "x.sources")
    assert [e.uri for e in entries] == ["http://on.example.org/d"]
    assert entries[0].signed_by is None  # inline key: not a keyring path


def test_one_line_format_with_options_and_comments():
    entries = parse_one_line(ONE_LINE, "sources.list")
    assert [(e.types, e.uri, e.suites) for e in entries] == [
        (("deb-src",), "http://src.example.org/debian", ("bookworm",)),
        (("deb",), "http://one.example.org/debian", ("bookworm",)),
        (("deb",), "http://two.example.org/debian", ("bookworm-backports",)),
    ]
    assert entries[1].signed_by == "/etc/apt/keyrings/x.gpg"
    assert entries[1].components == ("main", "non-free")
    assert entries[1].origin == "sources.list:3"


def test_pick_skips_source_entries_other_suites_and_unsupported_schemes():
    entries = parse_one_line(
        "deb-src http://a.example.org/d bookworm main\n"
        "deb cdrom:[Debian]/ bookworm main\n"
        "deb http://b.example.org/d bookworm-updates main\n"
        "deb http://c.example.org/d bookworm contrib\n"
        "deb https://d.example.org/d bookworm main\n",
        "sources.list",
    )
    assert pick_mirror(entries, "bookworm", "main").uri == "https://d.example.org/d"
    assert pick_mirror(entries, "trixie", "main") is None


def test_find_mirror_reads_files_in_apt_order(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "b.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "a.list").write_text(
        "deb http://first.example.org/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "c.list.disabled").write_text(
        "deb http://never.example.org/debian bookworm main\n"
    )
    assert find_mirror("bookworm", "main", tmp_path).uri == "http://first.example.org/debian"
    (tmp_path / "sources.list").write_text("deb http://top.example.org/debian bookworm main\n")
    assert find_mirror("bookworm", "main", tmp_path).uri == "http://top.example.org/debian"


def test_no_entry_is_a_clear_error(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://x.example.org/d trixie main\n")
    with pytest.raises(LabError, match="no apt source for Debian 'bookworm' 'main'"):
        find_mirror("bookworm", "main", tmp_path)
