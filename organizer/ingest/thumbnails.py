"""Thumbnails by image id: the one stored at indexing, or made now from the original by the safe
decoder (and stored) for images indexed without one. Never the original itself."""
from __future__ import annotations

from organizer.store import Store

SIDE = 256


def thumbnails(store: Store, image_ids: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for start in range(0, len(image_ids), 900):  # SQLite's limit on bound parameters
        part = image_ids[start:start + 900]
        q = f"SELECT id, thumbnail FROM images WHERE id IN ({','.join('?' * len(part))})"
        out.update({r[0]: r[1] for r in store.db.execute(q, part)})
    for image_id in [i for i in image_ids if i in out and not out[i]]:
        made = _make(store, image_id)
        if made:
            out[image_id] = made
        else:
            out.pop(image_id)
    return out


def _make(store: Store, image_id: str) -> bytes | None:
    from organizer.ingest.decode import DecodeError, decode_image, make_thumbnail

    rel = store.primary_paths([image_id]).get(image_id)
    root = store.library_root
    if not rel or root is None:
        return None
    try:
        thumb = make_thumbnail(decode_image((root / rel).read_bytes(), name=rel, min_side=SIDE).image, SIDE)
    except (OSError, DecodeError):
        return None
    with store.transaction():
        store.db.execute("UPDATE images SET thumbnail=? WHERE id=?", (thumb, image_id))
    return thumb
