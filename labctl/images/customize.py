"""The files the builder writes into the base image, rendered as text (pure).

Their text is part of the recipe hash, so editing any of them rebuilds the image.
What they do, in short: host identity is per host (empty machine-id, no hostname, no
SSH host keys: an ed25519 key is generated on first boot), root logs in with a key
only, and the VM initrd carries only the virtio modules.

Root's key on VMs needs no file here: Debian 12's systemd (252.39) ships
``tmpfiles.d/provision.conf`` (``f^ /root/.ssh/authorized_keys … ssh.authorized_keys.root``)
and ``systemd-tmpfiles-setup.service`` loads that credential, so a key passed as
``systemd.set_credential=ssh.authorized_keys.root:…`` lands in root's authorized_keys.
nspawn writes the file into the container's overlay instead.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
HOSTKEY_UNIT = "lab-ssh-hostkey.service"
LAB_IMAGE_FILE = "etc/lab-image"


@dataclass(frozen=True)
class ImageFile:
    path: str  # relative to the image root
    text: str
    mode: int = 0o644


def sshd_config() -> str:
    # sshd takes the first value it reads, and Debian's sshd_config includes
    # sshd_config.d/*.conf at its top, so these win.
    return (
        "# labctl: key-only root login, no DNS lookups, one host key (made on first boot)\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
        f"HostKey {HOST_KEY}\n"
    )


def hostkey_unit() -> str:
    # `ssh-keygen -A` would also make an RSA key, which takes seconds under qemu TCG.
    return (
        "[Unit]\n"
        "Description=Generate the SSH host key (ed25519 only) on first boot\n"
        f"ConditionPathExists=!{HOST_KEY}\n"
        "Before=ssh.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f'ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f {HOST_KEY}\n'
    )


def ssh_service_dropin() -> str:
    return f"[Unit]\nWants={HOSTKEY_UNIT}\nAfter={HOSTKEY_UNIT}\n"


def initramfs_conf() -> str:
    return "# labctl: only the modules listed in /etc/initramfs-tools/modules\nMODULES=list\n"


def initramfs_modules(modules: tuple[str, ...]) -> str:
    return "# labctl: what a VM needs to find its virtio root disk\n" + "".join(
        f"{m}\n" for m in modules
    )


def dpkg_nodoc() -> str:
    return "".join(
        f"path-exclude=/usr/share/{d}/*\n" for d in ("doc", "man", "info", "locale", "lintian")
    )


def hosts_file() -> str:
    return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def image_files(initrd_modules: tuple[str, ...]) -> tuple[ImageFile, ...]:
    """Every file the customisation writes, in writing order."""
    return (
        ImageFile("etc/ssh/sshd_config.d/10-lab.conf", sshd_config()),
        ImageFile(f"etc/systemd/system/{HOSTKEY_UNIT}", hostkey_unit()),
        ImageFile("etc/systemd/system/ssh.service.d/10-lab-hostkey.conf", ssh_service_dropin()),
        ImageFile("etc/initramfs-tools/conf.d/lab.conf", initramfs_conf()),
        ImageFile("etc/initramfs-tools/modules", initramfs_modules(initrd_modules)),
        ImageFile("etc/dpkg/dpkg.cfg.d/lab-nodoc", dpkg_nodoc()),
        ImageFile("etc/hosts", hosts_file()),
        # Per-host identity: systemd makes a machine-id at boot when this is empty.
        ImageFile("etc/machine-id", "", 0o444),
        # Lab hosts resolve nothing outside the lab; an empty file makes lookups
        # fail at once instead of hanging on an unreachable server.
        ImageFile("etc/resolv.conf", ""),
        # Root is mounted rw by the kernel (root=/dev/vda rw) or by nspawn.
        ImageFile("etc/fstab", ""),
    )


def lab_image_text(recipe_hash: str, suite: str) -> str:
    """/etc/lab-image: which recipe a host booted (written after hashing)."""
    return f"LAB_IMAGE_RECIPE={recipe_hash}\nLAB_IMAGE_SUITE={suite}\n"
