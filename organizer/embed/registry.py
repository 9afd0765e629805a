"""Backbone specs -> embedders.

    auto                                  CLIP if its weights are cached or reachable, else efficientnet-lite0
    efficientnet-lite0                    offline ImageNet CNN
    clip                                  clip:ViT-B-32:laion2b_s34b_b79k
    clip:MODEL[:PRETRAINED_TAG_OR_FILE]   any open_clip model; a file path for air-gapped machines
"""
from __future__ import annotations

import sys
from pathlib import Path

from organizer.embed import BackboneError, Embedder

_CACHE: dict[tuple, Embedder] = {}


def parse(spec: str) -> tuple[str, str | None, str | None]:
    spec = (spec or "auto").strip()
    if spec in ("auto", "efficientnet-lite0"):
        return spec, None, None
    if spec == "clip" or spec.startswith("clip:"):
        from organizer.embed.clip import DEFAULT_MODEL, DEFAULT_PRETRAINED

        parts = spec.split(":", 2)
        model = parts[1] if len(parts) > 1 and parts[1] else DEFAULT_MODEL
        if len(parts) > 2 and parts[2]:
            pretrained = parts[2]
        else:
            pretrained = DEFAULT_PRETRAINED if model == DEFAULT_MODEL else None
        if pretrained is None:
            raise BackboneError(f"say which weights to use: --backbone clip:{model}:TAG_OR_FILE")
        return "clip", model, pretrained
    raise BackboneError(f"unknown backbone {spec!r}: use auto, efficientnet-lite0 or clip[:MODEL[:PRETRAINED_OR_FILE]]")


def canonical(spec: str) -> str:
    kind, model, pretrained = parse(spec)
    if kind == "clip":
        from organizer.embed.clip import canonical_name

        return canonical_name(model, pretrained)
    return kind


def resolve(spec: str = "auto", *, store_backbone: str | None = None, quiet: bool = False,
            cache_dir=None, runtime: str | None = None) -> Embedder:
    from organizer.embed.runtime import requested_runtime

    kind, model, pretrained = parse(spec)
    options = dict(quiet=quiet, cache_dir=cache_dir, runtime=runtime)
    if kind == "auto":
        if store_backbone:  # a store keeps the backbone that made its vectors
            return resolve(store_backbone, **options)
        from organizer.embed.clip import DEFAULT_MODEL, DEFAULT_PRETRAINED, hub_weights_available

        if hub_weights_available(DEFAULT_MODEL, DEFAULT_PRETRAINED):
            return resolve("clip", **options)
        if not quiet:
            print("organizer: CLIP weights are not on this machine and the hub is unreachable; "
                  "using the offline efficientnet-lite0 backbone (no text search).", file=sys.stderr)
        return resolve("efficientnet-lite0", **options)
    name = canonical(spec)
    if store_backbone and store_backbone != name:
        raise BackboneError(f"this store's vectors were made by {store_backbone}; vectors of two backbones "
                            f"are never mixed: use --backbone {store_backbone} or another --store")
    try:
        how = requested_runtime(runtime)
    except ValueError as e:
        raise BackboneError(str(e)) from None
    # One embedder per backbone and runtime setting: the app and the CLI reuse loaded weights.
    key = (name, str(Path(cache_dir).resolve()) if cache_dir else None, how)
    if key not in _CACHE:
        if kind == "efficientnet-lite0":
            from organizer.embed.efficientnet import EfficientNetLite0

            _CACHE[key] = EfficientNetLite0(**options)
        else:
            from organizer.embed.clip import ClipEmbedder

            _CACHE[key] = ClipEmbedder(model, pretrained, **options)
    return _CACHE[key]
