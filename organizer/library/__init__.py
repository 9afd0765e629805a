"""`Library`: the one API of the CLI, the app and Python users, over one store.

    core.py      the store, indexing, ids, thumbnails, status
    groups.py    discover, list (as a tree), name, move, drop, merge, split, the map
    learning.py  labels, train, model versions, predictions, review, label issues, undo
    outputs.py   search, CSV/JSON, XMP, folders, ONNX, the HTTP API, watch, explain
    upkeep.py    tags, duplicates, repair
    results.py   the dataclasses it returns
"""
from organizer.library.core import LibraryCore, clean_name
from organizer.library.groups import GroupsMixin
from organizer.library.learning import LearningMixin
from organizer.library.outputs import OutputsMixin
from organizer.library.upkeep import UpkeepMixin
from organizer.library.results import (ClusterInfo, Grouping, HistoryEntry, ImageInfo, LabelIssue, ModelInfo,
                                       Overview, Prediction, ReviewItem, Status)
from organizer.embed import BackboneError
from organizer.store import StoreError, default_store_dir


class Library(GroupsMixin, LearningMixin, OutputsMixin, UpkeepMixin, LibraryCore):
    """One library (a store directory): `Library(store_dir)`; every method is documented where it lives."""


__all__ = ["BackboneError", "StoreError", "ClusterInfo", "Grouping", "HistoryEntry", "ImageInfo", "LabelIssue", "Library", "ModelInfo",
           "Overview", "Prediction", "ReviewItem", "Status", "clean_name", "default_store_dir"]
