"""Tags (any number per image, beside its one name), duplicates, and repairing the store."""
from __future__ import annotations


class UpkeepMixin:
    # -- tags -----------------------------------------------------------------------
    def add_tags(self, image_ids, tags: list[str]) -> int:
        from organizer.learn.tags import add_tags

        return add_tags(self.store, self._known_ids(image_ids), tags)

    def remove_tags(self, image_ids, tags: list[str]) -> int:
        from organizer.learn.tags import remove_tags

        return remove_tags(self.store, self._known_ids(image_ids), tags)

    def tag_summary(self) -> list[dict]:
        """Per tag: how many images carry it, how many are predicted, the tag model's metrics."""
        from organizer.learn.tags import tag_summary

        return tag_summary(self.store)

    def train_tags(self, *, untagged_negative: bool = False) -> dict:
        from organizer.learn.tags import train

        return train(self.store, untagged_negative=untagged_negative)

    def predict_tags(self) -> dict[str, int]:
        from organizer.learn.tags import predict

        return predict(self.store)

    # -- duplicates -------------------------------------------------------------------
    def duplicates(self, **options):
        """Groups of exact and near copies, the copy worth keeping first (see discover/duplicates.py)."""
        from organizer.discover.duplicates import find_groups

        return find_groups(self.store, **options)

    def write_duplicates(self, groups, out):
        from organizer.discover.duplicates import write_groups

        return write_groups(self.store, groups, out)

    def move_copies(self, groups, dest) -> dict:
        """Move every copy but the one to keep into `dest` (outside the library); nothing is deleted."""
        from organizer.discover.duplicates import move_copies

        return move_copies(self.store, groups, dest)

    # -- the store's own health ---------------------------------------------------------
    def repair(self, *, workers: int | None = None, progress=None):
        from organizer.repair import repair

        return repair(self.store, workers=workers, progress=progress)
