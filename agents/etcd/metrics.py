"""Prometheus metrics in the text exposition format, named like etcd's."""

from __future__ import annotations

from bisect import bisect_left

BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192)


class Histogram:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.n += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        acc = 0
        for bound, c in zip(BUCKETS, self.counts, strict=False):
            acc += c
            out.append(f'{self.name}_bucket{{le="{bound}"}} {acc}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.n}')
        out.append(f"{self.name}_sum {self.sum}")
        out.append(f"{self.name}_count {self.n}")
        return out


class Metrics:
    def __init__(self) -> None:
        self.counters = {
            "etcd_server_leader_changes_seen_total": 0,
            "etcd_server_proposals_committed_total": 0,
            "etcd_server_proposals_applied_total": 0,
            "etcd_server_proposals_failed_total": 0,
            "labetcd_loop_iterations_total": 0,
            "labetcd_proposal_batches_total": 0,
            "labetcd_wal_fsync_threaded_total": 0,
            "labetcd_wal_fsync_inline_total": 0,
        }
        self.gauges = {
            "etcd_server_has_leader": 0,
            "etcd_server_is_leader": 0,
            "etcd_server_proposals_pending": 0,
            "etcd_mvcc_db_total_size_in_bytes": 0,
            "etcd_debugging_mvcc_current_revision": 0,
        }
        self.wal_fsync = Histogram("etcd_disk_wal_fsync_duration_seconds", "WAL fdatasync latency")
        self.apply = Histogram("etcd_server_apply_duration_seconds", "time to apply a batch of committed entries")

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def render(self) -> str:
        lines: list[str] = []
        for name, v in self.counters.items():
            lines += [f"# TYPE {name} counter", f"{name} {v}"]
        for name, v in self.gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {v}"]
        lines += self.wal_fsync.render() + self.apply.render()
        return "\n".join(lines) + "\n"
