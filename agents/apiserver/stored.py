"""The stored JSON form of objects: metadata first and no resourceVersion (etcd's
mod_revision is the resourceVersion). Lists, watch events and write responses splice the
resourceVersion into the stored bytes instead of decoding and encoding the object."""

from __future__ import annotations

import json

_META_OPEN = b'{"metadata":{'


def splice_rv(raw: bytes, revision: int) -> bytes:
    """The object's JSON with metadata.resourceVersion = revision; decodes only if raw is
    not in the metadata-first stored form (e.g. written by something else)."""
    if raw.startswith(_META_OPEN):
        n = len(_META_OPEN)
        rv = b'"resourceVersion":"%d"' % revision
        return raw[:n] + rv + (b"" if raw[n:n + 1] == b"}" else b",") + raw[n:]
    obj = json.loads(raw)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return json.dumps(obj, separators=(",", ":")).encode()
