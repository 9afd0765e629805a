"""The decode + embed step of `organizer index --engine ray`: an actor pool over Ray Data."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from organizer.engine_ray import (BLOCK_FILES, WAVE_FILES, RayEngineError, _ray, alive_nodes, cluster_cpus,
                                  connect, quiet_ray_data, start_workers)


# -- the model, shipped once -------------------------------------------------------------
def model_spec(embedder) -> dict:
    """What actors need to embed exactly as this process would: the verified ONNX file itself
    when the embedder runs ONNX (built and checked here once, so no node exports or needs the
    weights), else the backbone spec and runtime for each actor to build in PyTorch."""
    ray = _ray()
    spec = {"backbone": embedder.name, "preprocess": embedder.preprocess, "dim": embedder.dim,
            "onnx": None, "label": "torch", "micro_batch": None}
    path = embedder.verified_onnx() if hasattr(embedder, "verified_onnx") else None
    if path is not None:  # the file is all the actors need: no session here
        label, micro_batch = "onnxruntime", embedder.micro_batch
    else:
        runner = embedder.runner(None) if hasattr(embedder, "runner") else None
        if runner is None:
            return spec
        if not hasattr(runner, "session"):  # PyTorch: each actor builds the backbone itself
            spec["label"] = runner.label
            return spec
        path, label, micro_batch = runner.path, runner.label, runner.micro_batch
    data = Path(path).read_bytes()
    spec.update(onnx=ray.put(data), sha256=hashlib.sha256(data).hexdigest(), label=label, micro_batch=micro_batch)
    return spec


def _local_model_file(spec: dict) -> Path:
    """The shipped ONNX bytes as a file on this node (a cache keyed by checksum)."""
    ray = _ray()
    folder = Path(tempfile.gettempdir()) / "organizer-ray-models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['sha256']}.onnx"
    if not path.exists():
        data = ray.get(spec["onnx"])
        if hashlib.sha256(data).hexdigest() != spec["sha256"]:
            raise RayEngineError("the model file arrived damaged")
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


class KnownHashes:
    """Content hashes already embedded, as one sorted fixed-width array: 32 bytes a hash, shared
    read-only by the actors of a node through the object store (a Python set is 4x larger and
    copied into every actor)."""

    def __init__(self, hashes):
        self.array = np.array(sorted(hashes), dtype="S32") if hashes else np.zeros(0, "S32")

    def __contains__(self, h: str) -> bool:
        a = self.array
        if not len(a):
            return False
        key = np.bytes_(h.encode())
        i = int(np.searchsorted(a, key))
        return i < len(a) and a[i] == key


class EmbedActor:
    """One Ray Data actor: reads, decodes and embeds blocks of files; built once per actor."""

    def __init__(self, spec: dict, root: str, thumb_size: int, max_pixels: int | None, known_ref, threads: int = 1):
        ray = _ray()
        from organizer.embed import l2_normalize

        self.root, self.thumb_size, self.max_pixels = root, thumb_size, max_pixels
        self.preprocess, self.dim = spec["preprocess"], spec["dim"]
        self.known = KnownHashes(())
        self.known.array = ray.get(known_ref[0])
        self.normalize = l2_normalize
        if spec["onnx"] is not None:
            from organizer.embed.runtime import OnnxRunner

            run = OnnxRunner(_local_model_file(spec), threads, spec["label"], spec["micro_batch"])
            self.embed = lambda x: l2_normalize(run(x))
        else:
            from organizer.embed import get_embedder

            embedder = get_embedder(spec["backbone"], store_backbone=spec["backbone"], quiet=True,
                                    runtime=spec["label"])
            if hasattr(embedder, "use_threads"):
                embedder.use_threads(threads)
            self.embed = embedder.embed_arrays

    def __call__(self, batch: dict) -> dict:
        from organizer.ingest.read import read_files

        items = read_files(self.root, [str(p) for p in batch["path"]], self.preprocess, self.thumb_size,
                           self.max_pixels, known=self.known)
        n = len(items)
        vectors = np.zeros((n, self.dim), np.float32)
        norms = np.zeros(n, np.float32)
        rows = [i for i, it in enumerate(items) if "pixels" in it]
        if rows:
            crops = np.stack([items[i].pop("pixels") for i in rows])
            v, nr = self.embed(self.preprocess.normalize(crops))
            vectors[rows], norms[rows] = v, nr
        embedded = np.zeros(n, bool)
        embedded[rows] = True
        return {"path": np.array([it["path"] for it in items], object),
                "hash": np.array([it.get("hash", "") for it in items], object),
                "error": np.array([it.get("error", "") for it in items], object),
                "width": np.array([it.get("width", 0) for it in items], np.int64),
                "height": np.array([it.get("height", 0) for it in items], np.int64),
                "format": np.array([it.get("format", "") for it in items], object),
                "thumb": np.array([it.get("thumb", b"") for it in items], object),
                "embedded": embedded, "vector": vectors, "norm": norms}


def _items(batch: dict) -> list[dict]:
    """A result block back into the items the sink takes (see ingest/read.py)."""
    out = []
    for i in range(len(batch["path"])):
        it: dict = {"path": str(batch["path"][i])}
        if batch["hash"][i]:
            it["hash"] = str(batch["hash"][i])
        if batch["error"][i]:
            it["error"] = str(batch["error"][i])
        elif batch["embedded"][i]:
            it.update(width=int(batch["width"][i]), height=int(batch["height"][i]), format=str(batch["format"][i]),
                      thumb=bytes(batch["thumb"][i]), vector=np.array(batch["vector"][i], np.float32),
                      norm=float(batch["norm"][i]))
        out.append(it)
    return out


def ray_producer(address: str | None = None):
    """The indexer's read step on Ray (see indexer._run_pipeline for the contract). Joins the
    cluster at once, so a wrong address fails before anything is scanned."""
    how = connect(address)

    def produce(root, to_read, embedder, known, *, workers, max_pixels, thumb_size, report=None):
        ray = _ray()
        n_actors = workers or cluster_cpus()
        if how != "local cluster":  # (Ray prestarts a worker a CPU for the first driver of a cluster it starts)
            start_workers(n_actors)  # the actors' processes start while Ray Data is imported here
        import ray.data  # here, not when joining: predict and cluster run plain tasks without it

        quiet_ray_data()
        spec = model_spec(embedder)
        if report is not None:
            report.runtime = f"ray ({how}, {alive_nodes()} nodes, {n_actors} actors, {spec['label']})"
        known_ref = [ray.put(KnownHashes(known).array)]  # in a list: the actor gets the ref, not a copy per call
        delivered: set[str] = set()
        for start in range(0, len(to_read), WAVE_FILES):
            wave = to_read[start:start + WAVE_FILES]
            ds = ray.data.from_items([{"path": p} for p in wave],
                                     override_num_blocks=max(1, -(-len(wave) // BLOCK_FILES)))
            ds = ds.map_batches(EmbedActor, batch_size=None, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors,
                                                                   initial_size=n_actors),
                                num_cpus=1, fn_constructor_args=(spec, str(root), thumb_size, max_pixels, known_ref),
                                udf_modifying_row_count=False)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                items = [it for it in _items(batch) if it["path"] not in delivered]  # a retried block twice
                delivered.update(it["path"] for it in items)
                yield items
            del ds

    return produce
