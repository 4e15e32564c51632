"""The kernel's main routing table as the route sync sees it: routes carrying our
protocol number are ours; we read, replace and delete only those."""

from __future__ import annotations

from dataclasses import dataclass

from .iproute import Commands
from .routes import Plan, Route, normalize_dst

# Our `proto` number: not in iproute2's rt_protos list of reserved ones, so routes that
# routing daemons, DHCP, networkd or an admin install never carry it.
DEFAULT_PROTO = 77


@dataclass
class TableState:
    owned: dict[str, str]  # destination → gateway of our routes
    foreign: set[str]      # destinations of every other route at metric 0


def parse_table(owned_json: list[dict], all_json: list[dict]) -> TableState:
    """Pure: `ip -j route show proto N` and `ip -j route show` → TableState."""
    owned = {normalize_dst(r["dst"]): r.get("gateway", "") for r in owned_json}
    foreign = {normalize_dst(r["dst"]) for r in all_json
               if normalize_dst(r["dst"]) not in owned and not r.get("metric")}
    return TableState(owned, foreign)


class RouteTable:
    def __init__(self, commands: Commands | None = None, proto: int = DEFAULT_PROTO):
        if not 1 <= proto <= 255:
            raise ValueError(f"route protocol must be 1-255, not {proto}")
        self.cmd = commands or Commands()
        self.proto = str(proto)

    def read(self) -> TableState:
        owned = self.cmd.ip_json("-4", "route", "show", "table", "main", "proto", self.proto)
        every = self.cmd.ip_json("-4", "route", "show", "table", "main")
        return parse_table(owned, every)

    def replace(self, route: Route) -> None:
        self.cmd.ip("route", "replace", route.dst, "via", route.gateway, "proto", self.proto)

    def delete(self, dst: str) -> None:
        self.cmd.ip("route", "del", dst, "proto", self.proto)

    def apply(self, plan: Plan) -> list[str]:
        """Make the plan's changes; returns an error message per change that failed (the
        others still happen)."""
        errors = []
        for route in plan.replace:
            try:
                self.replace(route)
            except Exception as exc:  # noqa: BLE001 - one bad node must not stop the rest
                errors.append(f"route {route.dst} via {route.gateway}: {exc}")
        for dst in plan.delete:
            try:
                self.delete(dst)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"delete route {dst}: {exc}")
        return errors
