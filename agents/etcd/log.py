"""Structured log lines on stdout (one JSON object per line, like etcd's zap logger)."""

from __future__ import annotations

import json
import sys
import time


class Logger:
    def __init__(self, name: str, stream=None) -> None:
        self.name = name
        self.stream = stream or sys.stdout

    def _emit(self, level: str, msg: str, fields: dict) -> None:
        rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
               "level": level, "member": self.name, "msg": msg}
        rec.update(fields)
        self.stream.write(json.dumps(rec, default=str) + "\n")
        self.stream.flush()

    def info(self, msg: str, **fields) -> None:
        self._emit("info", msg, fields)

    def warn(self, msg: str, **fields) -> None:
        self._emit("warn", msg, fields)

    def error(self, msg: str, **fields) -> None:
        self._emit("error", msg, fields)
