"""Ansible YAML inventories: hosts, groups, merged variables, lab settings, validation.

    inv = load_inventory("inventory/default.yml", extra_vars={"lab_provider": "nspawn"})
    inv.hosts["cp-1"].address, inv.problems(), inv.hosts_matching("workers:!w-2")
"""

from labctl.inventory.defaults import DEFAULTS, PROVIDERS
from labctl.inventory.extravars import parse_extra_vars
from labctl.inventory.load import load_inventory
from labctl.inventory.model import Group, Host, Inventory
from labctl.inventory.problems import InventoryError, Problem

__all__ = [
    "DEFAULTS",
    "PROVIDERS",
    "Group",
    "Host",
    "Inventory",
    "InventoryError",
    "Problem",
    "load_inventory",
    "parse_extra_vars",
]
