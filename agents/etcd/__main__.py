"""python -m agents.etcd [etcd flags]  |  python -m agents.etcd snapshot restore FILE [flags]"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from .config import ConfigError, parse_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fault_injection = "--experimental-fault-injection" in argv
    if fault_injection:
        argv.remove("--experimental-fault-injection")
    try:
        if argv[:2] == ["snapshot", "restore"]:
            if len(argv) < 3 or argv[2].startswith("-"):
                print("usage: python -m agents.etcd snapshot restore FILE --name N --data-dir D "
                      "--initial-cluster ... [--initial-cluster-token T]", file=sys.stderr)
                return 2
            from .restore import RestoreError, restore
            from .snapfile import SnapshotError

            cfg = parse_args(argv[3:])
            try:
                print(restore(argv[2], cfg))
            except (RestoreError, SnapshotError, OSError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            return 0
        cfg = parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .node import JoinError
    from .server import serve
    from .snapfile import SnapshotError
    from .wal import WalCorrupt

    profile = os.environ.get("LABETCD_PROFILE")  # write cProfile stats here at exit
    if profile:
        profile = profile.replace("{name}", cfg.name)
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        asyncio.run(serve(cfg, fault_injection))
    except (WalCorrupt, SnapshotError, JoinError) as e:
        print(json.dumps({"level": "fatal", "member": cfg.name, "msg": str(e)}), flush=True)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if profile:
            prof.disable()
            prof.dump_stats(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
