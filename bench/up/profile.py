"""bench/up/profile: where does a VM's boot time go?

Boots N libvirt VMs hosts-only (like bench/up), then asks each guest for
``systemd-analyze``, ``blame`` and ``critical-chain`` and copies its console log, and
removes the lab. Kernel parameters can be added or dropped for an experiment:

    .venv/bin/python -m bench.up.profile --vms 1 --add 'printk.time=1 systemd.log_level=info' --drop quiet

Output goes to ``--out`` (a directory): one ``<host>.txt`` per VM and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.up.run import ROOT, scenario_lab  # noqa: F401  (ROOT puts labctl on sys.path)
from labctl.providers import libvirt as libvirt_provider

REPORT_COMMANDS = (
    "systemd-analyze",
    "systemd-analyze blame --no-pager | head -25",
    "systemd-analyze critical-chain --no-pager ssh.service",
    "systemd-analyze critical-chain --no-pager",
    "cat /proc/cmdline; nproc; free -m | head -2",
    "lsmod | sort",
    "systemctl is-system-running; systemctl --failed --no-legend --plain",
)


def patched_cmdline(add: list[str], drop: list[str]):
    original = libvirt_provider.kernel_cmdline

    def cmdline(spec):
        text = original(spec)
        quoted = text.index(' "')  # the quoted credential (it has spaces) stays last
        words = [w for w in text[:quoted].split(" ") if w not in drop]
        return " ".join(words + add) + text[quoted:]

    return cmdline


def legacy_boot() -> None:
    """Boot the way labctl did before the NVMe root: virtio disk + the image's initrd
    (for A/B comparisons; the image still ships the initrd)."""
    render, cmdline = libvirt_provider.render_domain_xml, libvirt_provider.kernel_cmdline

    def legacy_xml(p):
        xml = render(p)
        start, end = xml.index("  <qemu:commandline>"), xml.index("</qemu:commandline>")
        xml = xml[:start] + xml[end + len("</qemu:commandline>") + 1 :]
        initrd = Path(p.kernel).with_name("initrd.img")
        xml = xml.replace("    <cmdline>", f"    <initrd>{initrd}</initrd>\n    <cmdline>", 1)
        disk = (
            "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{p.overlay}'/><target dev='vda' bus='virtio'/></disk>\n"
        )
        return xml.replace("  <devices>\n", "  <devices>\n" + disk, 1)

    def legacy_cmdline(spec):
        text = cmdline(spec).replace("root=/dev/nvme0n1 rootfstype=ext4 rootwait", "root=/dev/vda")
        return text

    libvirt_provider.render_domain_xml = legacy_xml
    libvirt_provider.kernel_cmdline = legacy_cmdline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1)
    parser.add_argument("--add", default="", help="kernel parameters to add (space-separated)")
    parser.add_argument("--drop", default="", help="kernel parameters to drop (exact words)")
    parser.add_argument("--legacy", action="store_true",
                        help="boot from a virtio disk through the initrd (the old way), for A/B")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/labctl-boot-profile"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/up/profile needs root", file=sys.stderr)
        return 2
    if args.legacy:
        legacy_boot()
    libvirt_provider.kernel_cmdline = patched_cmdline(args.add.split(), args.drop.split())
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    def collect(lab_root: Path, conns: dict) -> None:
        for host, conn in conns.items():
            lines = []
            for command in REPORT_COMMANDS:
                result = conn.run(command, timeout=120)
                lines += [f"$ {command}", result.stdout.rstrip(), result.stderr.rstrip()]
            (args.out / f"{host}.txt").write_text("\n".join(lines) + "\n")
            console = lab_root / "logs" / f"{host}.console.log"
            if console.exists():
                shutil.copy(console, args.out / f"{host}.console.log")

    t0 = time.monotonic()
    run = scenario_lab("libvirt", args.vms, after_up=collect)
    run["profile_s"] = round(time.monotonic() - t0, 1)
    run["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    (args.out / "summary.json").write_text(json.dumps(run, indent=2) + "\n")
    keys = ("ssh_ready_s", "ready_s", "down_s", "load_avg", "qemu_cpu_s")
    print(json.dumps({k: run[k] for k in keys}))
    print(f"profile in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
