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
NEEDS_UPDATE_STAMPS = ("etc/.updated", "var/.updated")


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
    # The empty ExecStartPre= drops Debian's `sshd -t` config check: one more exec of
    # sshd (~1 s under qemu TCG) on the way to the first login, for a config we wrote.
    return (
        f"[Unit]\nWants={HOSTKEY_UNIT}\nAfter={HOSTKEY_UNIT}\n"
        "\n[Service]\nExecStartPre=\n"
    )


def journald_conf() -> str:
    # Lab hosts are thrown away: the journal in /run is enough, and it saves the
    # flush to /var/log/journal at every boot (systemd-journal-flush is masked).
    return "[Journal]\nStorage=volatile\n"


# Modules a VM loaded at boot for nothing (seen in lsmod), each seconds of TCG time:
# the default qemu CPU model advertises svm, so udev loaded kvm + kvm_amd; powernow_k8
# probes for frequency scaling that is not there; systemd loads autofs4 for automount
# units (none left: binfmt's is masked); fw_cfg, raw serio and evdev serve nothing
# here (no keyboard or mouse to read, credentials come from the kernel command line).
# Lab hosts run no VMs.
BLACKLISTED_MODULES = (
    "kvm", "kvm_amd", "kvm_intel", "powernow_k8", "autofs4", "qemu_fw_cfg", "serio_raw",
    "evdev",
)  # fmt: skip


def modprobe_blacklist(modules: tuple[str, ...] = BLACKLISTED_MODULES) -> str:
    return "# labctl: modules no lab host needs, not worth loading at boot\n" + "".join(
        f"blacklist {m}\n" for m in modules
    )


# udev's boot-time coldplug (systemd-udev-trigger, masked in the recipe) replayed
# hundreds of devices under TCG to end up loading these. Loading them directly is
# enough: eth0 and the RNG then appear as live events, which udev handles as usual
# (networkd waits for udev to have seen eth0). `button` lets libvirt's ACPI shutdown
# (`labctl stop`/`down`) power the VM off cleanly instead of waiting to force it.
# Containers skip modules-load.
BOOT_MODULES = ("virtio_pci", "virtio_net", "virtio_rng", "button")


def boot_modules(modules: tuple[str, ...] = BOOT_MODULES) -> str:
    return "# labctl: the VM's virtio NIC and RNG, the ACPI power button (no udev coldplug)\n" + "".join(
        f"{m}\n" for m in modules
    )


def needs_update_stamp(usr_mtime_ns: int) -> str:
    """/etc/.updated and /var/.updated: "this tree is up to date with /usr".

    Without them every boot counts as "after an update" (ConditionNeedsUpdate), so
    systemd-sysusers runs on the boot's critical path for users the packages already
    made. Written after the build with /usr's modification time, so a later change
    to /usr (a package installed by a role) still triggers the update units.
    """
    return f"TIMESTAMP_NSEC={usr_mtime_ns}\n"


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
        ImageFile("etc/systemd/journald.conf.d/10-lab.conf", journald_conf()),
        ImageFile("etc/modprobe.d/lab-blacklist.conf", modprobe_blacklist()),
        ImageFile("etc/modules-load.d/lab-virtio.conf", boot_modules()),
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
