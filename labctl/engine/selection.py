"""Which tasks run under ``--tags`` / ``--skip-tags`` (pure; Ansible's rules).

- no ``--tags`` (or ``all``): every task except those tagged ``never``;
- ``--tags a,b``: tasks carrying a or b, plus ``always`` tasks; ``tagged``/``untagged``
  select tasks with/without any tag; ``never`` tasks run only when one of their other
  tags is asked for explicitly;
- ``--skip-tags`` removes tasks carrying any of its tags (``always`` included when named).
"""

from __future__ import annotations

from collections.abc import Collection


def is_selected(task_tags: Collection[str], only: Collection[str] = (),
                skip: Collection[str] = ()) -> bool:
    tags = set(task_tags)
    only, skip = set(only), set(skip)
    if skip:
        if tags & skip:
            return False
        if "tagged" in skip and tags:
            return False
        if "untagged" in skip and not tags:
            return False
    if not only or "all" in only:
        if "never" in tags:
            return bool(tags & only - {"all", "never"})
        return True
    if "always" in tags and "always" not in skip:
        return True
    if tags & only:
        return True
    if "tagged" in only and tags - {"never"}:
        return "never" not in tags
    return "untagged" in only and not tags
