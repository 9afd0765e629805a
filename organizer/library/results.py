"""What `Library` returns: small dataclasses with typed fields (`dataclasses.asdict` gives JSON)."""
from __future__ import annotations

from dataclasses import dataclass, field

from organizer.learn.label_issues import LabelIssue
from organizer.learn.versions import ModelInfo
from organizer.store.history import HistoryEntry

__all__ = ["ClusterInfo", "Grouping", "HistoryEntry", "ImageInfo", "LabelIssue", "ModelInfo", "Overview", "Prediction",
           "ReviewItem", "Status"]


@dataclass
class ClusterInfo:
    id: int
    size: int
    suggestions: list[tuple[str, float]]
    label: str | None                 # the name most of its images carry, if any
    labeled: int                      # how many of its images carry a name
    sample_ids: list[str] = field(default_factory=list)
    sample_paths: list[str] = field(default_factory=list)
    level: str = "group"              # group (a flat cluster) | parent (a group of groups) | sub-group | unsorted
    parent: int = -1                  # the tree node above it (-1: none)
    children: list[int] = field(default_factory=list)   # the tree nodes right below it
    agreement: float | None = None    # how tightly its members agree (share of neighbours inside it)
    look_alike: list[int] = field(default_factory=list)  # clusters that look like the same thing


@dataclass
class Grouping:
    """One run of `Library.cluster`."""
    clustering_id: int
    images: int
    clusters: int
    unsorted: int
    core_noise: int                   # images HDBSCAN itself left out (before placing them by their neighbours)
    params: dict


@dataclass
class ReviewItem:
    """An image worth a person's look, with the model's held-out guess about it."""
    image_id: str
    path: str
    predicted: str
    confidence: float
    runner_up: str | None
    margin: float                     # confidence minus the runner-up's
    label: str | None                 # the name it carries now (from its cluster), if any


@dataclass
class ImageInfo:
    id: str
    path: str
    width: int
    height: int
    format: str
    cluster: int
    label: str | None
    label_source: str | None
    predicted: str | None
    confidence: float | None


@dataclass
class Prediction:
    image_id: str
    label: str                        # "unknown" below the class threshold
    best: str                         # the most likely class, whatever the threshold
    confidence: float


@dataclass
class Status:
    """What a store holds."""
    store: str                        # the store's folder
    library: str                      # the indexed image folder ("" before the first index)
    backbone: str | None
    images: int                       # embedded images
    labeled: int                      # images carrying a name
    ok: int                           # files indexed
    error: int                        # files that could not be read
    missing: int                      # files gone from the folder since they were indexed
    clusterings: int
    model: ModelInfo | None           # the current model


@dataclass
class Overview:
    """Status plus what the app's Library page lists."""
    status: Status
    errors: list[tuple[str, str]]     # (path, why) of every file that could not be read
    clusterings: list[dict]           # the last five: id, created_at, params (dict), seed, n_images, n_clusters
    models: list[ModelInfo]           # the last five, newest first
    label_names: list[tuple[str, int]]
    n_clusters: int
