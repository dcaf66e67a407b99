"""Pure parts of the lab: apt source parsing (mirror discovery) and config template rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ccengine.lab.chroot import LabError, _uris_from_deb822, _uris_from_list, debian_mirror
from ccengine.lab.instance import render_template
from ccengine.lab.lab import bind_into

FIXTURES = Path(__file__).parent / "fixtures" / "spine"


# ------------------------------------------------------------------ deb822


def test_deb822_skips_security_and_source_stanzas() -> None:
    uris = _uris_from_deb822((FIXTURES / "debian.sources").read_text())
    assert uris == ["http://mirror.example.org/debian", "http://backup.example.org/debian"]


def test_deb822_field_names_are_case_insensitive_and_multi_type_counts() -> None:
    text = "types: deb deb-src\nuris: http://a.example/debian\nsuites: sid\ncomponents: main\n"
    assert _uris_from_deb822(text) == ["http://a.example/debian"]


def test_deb822_stanzas_separated_by_whitespace_only_lines() -> None:
    text = ("Types: deb\nURIs: http://one.example/debian\nSuites: sid\n   \n"
            "Types: deb\nURIs: http://two.example/debian\nSuites: sid\n")
    assert _uris_from_deb822(text) == ["http://one.example/debian", "http://two.example/debian"]


def test_deb822_without_deb_stanza_is_empty() -> None:
    assert _uris_from_deb822("Types: deb-src\nURIs: http://x.example\nSuites: sid\n") == []
    assert _uris_from_deb822("") == []


# ------------------------------------------------------------------ one-line format


def test_list_format_skips_comments_sources_and_security() -> None:
    text = (
        "# comment\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "#deb http://commented.example.org/debian bookworm main\n"
        "deb http://mirror.example.org/debian bookworm main # trailing\n"
        "\n"
        "deb    http://tabs.example.org/debian\tbookworm-updates main\n"
    )
    assert _uris_from_list(text) == ["http://mirror.example.org/debian", "http://tabs.example.org/debian"]


def test_list_format_with_single_option_block() -> None:
    text = "deb [arch=amd64] http://mirror.example.org/debian bookworm main\n"
    assert _uris_from_list(text) == ["http://mirror.example.org/debian"]


def test_list_format_fixture() -> None:
    uris = _uris_from_list((FIXTURES / "sources.list").read_text())
    assert uris == ["http://mirror.example.org/debian", "http://second.example.org/debian"]


@pytest.mark.parametrize("options", ["[arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]",
                                     "[ arch=amd64 ]"])
def test_list_format_with_multi_option_block(options: str) -> None:
    text = f"deb {options} http://mirror.example.org/debian bookworm main\n"
    assert _uris_from_list(text) == ["http://mirror.example.org/debian"]


def test_list_format_incomplete_line_ignored() -> None:
    assert _uris_from_list("deb http://only-uri.example\n") == []


# ------------------------------------------------------------------ debian_mirror


def test_mirror_from_sources_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    shutil.copy(FIXTURES / "debian.sources", folder / "debian.sources")
    (folder / "notes.txt.disabled").write_text("nothing useful\n")
    assert debian_mirror(sources=(folder, tmp_path / "sources.list")) == "http://mirror.example.org/debian"


def test_mirror_falls_back_to_classic_list(tmp_path: Path) -> None:
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "security.sources").write_text(
        "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n")
    listing = tmp_path / "sources.list"
    listing.write_text("deb http://classic.example.org/debian bookworm main\n")
    assert debian_mirror(sources=(folder, listing)) == "http://classic.example.org/debian"


def test_list_files_in_folder_use_the_one_line_parser(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.list").write_text("deb http://a.example.org/debian sid main\n")
    (folder / "b.sources").write_text("Types: deb\nURIs: http://b.example.org/debian\nSuites: sid\n")
    # files are tried in name order
    assert debian_mirror(sources=(folder,)) == "http://a.example.org/debian"


def test_no_mirror_is_a_lab_error(tmp_path: Path) -> None:
    folder = tmp_path / "empty.d"
    folder.mkdir()
    (folder / "only-src.sources").write_text("Types: deb-src\nURIs: http://x.example\nSuites: sid\n")
    with pytest.raises(LabError, match="no Debian mirror"):
        debian_mirror(sources=(folder, tmp_path / "missing.list"))


# ------------------------------------------------------------------ render_template


def test_render_replaces_known_placeholders() -> None:
    text = "[general]\nport = {{ami_port}}\nbind = 127.0.0.1:{{ http_port }}\nname={{instance}}-{{instance}}\n"
    out = render_template(text, {"ami_port": "15038", "http_port": "18088", "instance": "pbx"}, "manager.conf")
    assert out == "[general]\nport = 15038\nbind = 127.0.0.1:18088\nname=pbx-pbx\n"


def test_render_does_not_expand_placeholders_inside_values() -> None:
    out = render_template("x={{a}}", {"a": "{{b}}"}, "f.conf")
    assert out == "x={{b}}"


def test_render_text_without_placeholders_is_unchanged() -> None:
    text = "exten => _X.,1,Stasis(ccengine,${EXTEN})\n same => n,Hangup()\n"
    assert render_template(text, {}, "extensions.conf") == text


def test_unknown_placeholder_is_a_lab_error_naming_file_and_variable() -> None:
    with pytest.raises(LabError) as info:
        render_template("a={{ami_port}}\nb={{ nope }}\n", {"ami_port": "1"}, "/etc/lab/pjsip.conf")
    message = str(info.value)
    assert message.startswith("/etc/lab/pjsip.conf:")
    assert "{{nope}}" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_bind_replaces_a_stale_mount_of_a_deleted_checkout(tmp_path: Path) -> None:
    """A checkout deleted and cloned again at the same path must not leave the chroot on the old one."""
    checkout = tmp_path / "check" / "main" / ".lab"
    target = tmp_path / "chroot" / "check" / "main" / ".lab"
    checkout.mkdir(parents=True)
    (checkout / "old.txt").write_text("old run")
    try:
        bind_into(checkout, target)
        assert (target / "old.txt").read_text() == "old run"
        shutil.rmtree(checkout)  # the earlier CI run's folder goes; its mount stays
        checkout.mkdir(parents=True)
        (checkout / "asterisk.conf").write_text("new run")
        assert not (target / "asterisk.conf").exists()

        bind_into(checkout, target)

        assert (target / "asterisk.conf").read_text() == "new run"
        (checkout / "written-by-host").write_text("x")
        assert (target / "written-by-host").exists()
        bind_into(checkout, target)  # already right: kept, not stacked
        mounts = Path("/proc/self/mountinfo").read_text().split()
        assert mounts.count(str(target)) == 1
    finally:
        while subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
            pass
