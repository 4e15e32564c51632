"""The lab key pair and known_hosts file handling (no SSH connections)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading

import pytest
from cryptography.hazmat.primitives import serialization

from labctl.errors import LabError
from labctl.sshkeys import KnownHosts, ensure_keypair, fingerprint, host_alias

pytestmark = pytest.mark.unit

KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
KEY_B = "AAAAC3NzaC1lZDI1NTE5AAAAIHb3pPJd1iTlCp7DFtJC+NZUBHfUYgYf3cAQ5BwSNr8x"


def test_keypair_is_created_0600_with_its_public_half(tmp_path):
    private = tmp_path / "ssh" / "id_ed25519"
    line = ensure_keypair(private)
    assert line.startswith("ssh-ed25519 AAAA") and line.endswith(" labctl")
    assert private.stat().st_mode & 0o777 == 0o600
    pub = private.with_name("id_ed25519.pub")
    assert pub.read_text().strip() == line
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    derived = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert line.split()[:2] == derived.decode().split()


def test_keypair_is_kept_and_repaired(tmp_path):
    private = tmp_path / "id_ed25519"
    line = ensure_keypair(private)
    private.chmod(0o644)
    private.with_name("id_ed25519.pub").unlink()
    assert ensure_keypair(private) == line
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.with_name("id_ed25519.pub").read_text().strip() == line


def test_garbage_private_key_is_explained(tmp_path):
    private = tmp_path / "id_ed25519"
    private.write_text("not a key")
    with pytest.raises(LabError, match="not an unencrypted OpenSSH private key"):
        ensure_keypair(private)


def test_openssh_accepts_the_key_pair(tmp_path):
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("needs ssh-keygen")
    private = tmp_path / "id_ed25519"
    line = ensure_keypair(private)
    out = subprocess.run([keygen, "-y", "-f", str(private)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[:2] == line.split()[:2]


def test_alias_follows_openssh():
    assert host_alias("10.0.0.2") == "10.0.0.2"
    assert host_alias("10.0.0.2", 2222) == "[10.0.0.2]:2222"


def test_fingerprint_matches_ssh_keygen(tmp_path):
    assert fingerprint(KEY_A).startswith("SHA256:") and "=" not in fingerprint(KEY_A)
    keygen = shutil.which("ssh-keygen")
    if keygen:
        pub = tmp_path / "k.pub"
        pub.write_text(f"ssh-ed25519 {KEY_A} x\n")
        out = subprocess.run([keygen, "-lf", str(pub)], capture_output=True, text=True)
        assert out.stdout.split()[1] == fingerprint(KEY_A)
    with pytest.raises(LabError, match="not a base64"):
        fingerprint("!!!")


def test_pin_get_replace_forget(tmp_path):
    kh = KnownHosts(tmp_path / "known_hosts")
    assert kh.get("10.0.0.2") is None
    kh.pin("10.0.0.2", "ssh-ed25519", KEY_A)
    kh.pin("[10.0.0.3]:2222", "ssh-ed25519", KEY_B)
    assert kh.get("10.0.0.2") == f"ssh-ed25519 {KEY_A}"
    kh.pin("10.0.0.2", "ssh-ed25519", KEY_B)  # a re-provisioned host: one line, the new key
    assert kh.get("10.0.0.2") == f"ssh-ed25519 {KEY_B}"
    assert (tmp_path / "known_hosts").read_text().count("10.0.0.2 ") == 1
    kh.forget("10.0.0.2")
    assert kh.get("10.0.0.2") is None
    assert kh.get("[10.0.0.3]:2222") == f"ssh-ed25519 {KEY_B}"


def test_foreign_lines_are_kept(tmp_path):
    path = tmp_path / "known_hosts"
    hashed = f"|1|c2FsdA==|aGFzaA== ssh-ed25519 {KEY_A}"
    path.write_text(f"# comment\n{hashed}\nweb,10.0.0.9 ssh-ed25519 {KEY_A}\n")
    kh = KnownHosts(path)
    assert kh.get("10.0.0.9") == f"ssh-ed25519 {KEY_A}"
    kh.forget("10.0.0.9")
    text = path.read_text()
    assert "# comment" in text and hashed in text
    assert f"web ssh-ed25519 {KEY_A}" in text and kh.get("10.0.0.9") is None


def test_ssh_keygen_finds_pinned_entries(tmp_path):
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("needs ssh-keygen")
    path = tmp_path / "known_hosts"
    KnownHosts(path).pin("[10.0.0.3]:2222", "ssh-ed25519", KEY_B)
    out = subprocess.run(
        [keygen, "-F", "[10.0.0.3]:2222", "-f", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0 and KEY_B in out.stdout


def test_parallel_pins_all_land(tmp_path):
    kh = KnownHosts(tmp_path / "known_hosts")
    keys = [base64.b64encode(bytes([i]) * 51).decode() for i in range(20)]
    threads = [
        threading.Thread(target=kh.pin, args=(f"10.0.0.{i}", "ssh-ed25519", keys[i]))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [kh.get(f"10.0.0.{i}") for i in range(20)] == [f"ssh-ed25519 {k}" for k in keys]
