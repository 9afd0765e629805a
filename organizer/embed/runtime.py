"""How an image tower runs: ONNX Runtime (exported once, cached, verified), PyTorch with
bfloat16 weights on CPUs with AMX, or plain PyTorch. The choice depends on the network and
the CPU, and every fast path falls back to plain PyTorch, with a notice, when it cannot be
built or disagrees with it.

Measured on a 2-core AVX-512/AMX Xeon (see benchmarks/README.md): EfficientNet-Lite0 is
depthwise and memory-bound, so ONNX Runtime fp32 is several times faster than PyTorch eager
while bf16 does not help it; a ViT's time is in large matrix products, which AMX runs in
bf16 several times faster than fp32.

The ONNX file is a cache under the store (`<store>/cache/onnx/`): its name carries the
backbone, the weights' identity and the torch/onnx/onnxruntime versions, a JSON sidecar
carries its size and SHA-256, and a file that fails the check is deleted and exported again.
A verified export is also published to a per-user cache ($ORGANIZER_USER_CACHE, default
`~/.cache/organizer`; "off" disables it), so a second store on the same machine copies it
(checksum checked again) instead of importing PyTorch and exporting; only backbones whose
weights have a stable identity (an installed package, a hub tag) are shared, and the
folder is pruned to USER_CACHE_MAX_BYTES, least recently used first.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from organizer.store.files import replace_file

RUNTIME_ENV = "ORGANIZER_RUNTIME"      # auto | onnx | onnx-int8 | torch | torch-bf16
THREADS_ENV = "ORGANIZER_THREADS"      # inference threads (default: every core)
RUNTIMES = ("auto", "onnx", "onnx-int8", "torch", "torch-bf16")
EXPORT_FORMAT = 2                      # bump when the export recipe changes: old cache files are ignored
ONNX_MIN_COSINE = 0.999                # same network, same precision: must agree almost exactly
REDUCED_MIN_COSINE = 0.99              # bf16 / int8 against fp32
OPSET = 17
USER_CACHE_ENV = "ORGANIZER_USER_CACHE"   # a folder, or "off"
USER_CACHE_MAX_BYTES = 1 << 30


class FallbackError(Exception):
    """A fast runtime that cannot be used here; the message says why."""


# -- the machine -------------------------------------------------------------------------
def cpu_flags() -> frozenset[str]:
    """CPU feature flags (Linux /proc/cpuinfo); empty where unknown, which selects safe defaults."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_amx_bf16(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return "amx_bf16" in flags and "amx_tile" in flags


def inference_threads() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, os.cpu_count() or 1)


def requested_runtime(runtime: str | None = None) -> str:
    value = (runtime or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(f"unknown runtime {value!r} (set {RUNTIME_ENV} to one of {', '.join(RUNTIMES)})")
    return value


def candidates(family: str, requested: str, cache_dir: Path | None, flags: frozenset[str] | None = None
               ) -> list[str]:
    """Runtimes to try, fastest first; plain torch always ends the list.

    family: "convnet" or "transformer". Without a cache directory there is nowhere to keep an
    export, so ONNX is not tried (exporting on every start would cost more than it saves)."""
    if requested == "auto":
        if family == "transformer" and has_amx_bf16(flags):
            order = ["torch-bf16", "onnx"]
        else:
            order = ["onnx"]  # convnets: bf16 and dynamic int8 were both slower than ORT fp32
    else:
        order = [requested]
    if cache_dir is None:
        order = [r for r in order if not r.startswith("onnx")]
    return [r for r in order if r != "torch"] + ["torch"]


def versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "none"
    return out


def file_fingerprint(path: str | os.PathLike) -> str:
    """Identity of a weights file without reading it: resolved path, size, mtime."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"


def cache_stem(backbone: str, fingerprint: str, variant: str = "fp32") -> str:
    """`<backbone-key>-torchX-onnxY-ortZ-<variant>-<hash>`: readable, and unique per weights."""
    v = versions()
    # A CLIP spec holds a file path: only its model name goes into the readable part.
    readable = "clip-" + backbone.split(":")[1] if backbone.startswith("clip:") else backbone
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", readable)
    digest = hashlib.sha256(f"{backbone}|{fingerprint}|{EXPORT_FORMAT}|{OPSET}".encode()).hexdigest()[:12]
    return (f"{slug.strip('-')}-torch{v['torch']}-onnx{v['onnx']}-ort{v['onnxruntime']}-{variant}-{digest}")


def user_cache_dir() -> Path | None:
    raw = os.environ.get(USER_CACHE_ENV, "").strip()
    if raw.lower() in ("off", "0", "none", "false", "no"):
        return None
    base = Path(raw).expanduser() if raw else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "organizer"
    return base / "onnx"


# -- verification --------------------------------------------------------------------------
def probe_batch(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    """Smooth random images (normalised-pixel range), added to every verification batch so a
    check never rests on one picture alone."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (n, 3, 8, 8)).astype(np.float32)
    reps = -(-size // 8)
    smooth = np.repeat(np.repeat(coarse, reps, axis=2), reps, axis=3)[:, :, :size, :size]
    return np.ascontiguousarray(smooth + 0.1 * rng.normal(0.0, 1.0, smooth.shape).astype(np.float32))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(num / np.maximum(den, 1e-12)))


def verification_batch(first: np.ndarray | None, size: int, limit: int = 6) -> np.ndarray:
    probes = probe_batch(size)
    if first is None or not len(first):
        return probes
    return np.concatenate([np.asarray(first[:limit], np.float32), probes])


# -- ONNX Runtime --------------------------------------------------------------------------
class OnnxRunner:
    """An ONNX Runtime session over a verified model file: (n,3,H,W) float32 -> features."""

    def __init__(self, path: Path, threads: int | None = None, label: str = "onnx", micro_batch: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or inference_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers would steal the cores that decode processes need between batches.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.label = label
        self.path = Path(path)
        self.threads = so.intra_op_num_threads
        self.micro_batch = micro_batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.micro_batch or len(x) or 1
        parts = [self.session.run(None, {self.input: x[i:i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 0), np.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_verified(path: Path) -> dict | None:
    """The sidecar of a cached model if the file is complete and unchanged, else None (and the
    damaged files are removed, so the caller exports again)."""
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    try:
        info = json.loads(sidecar.read_text())
        if path.stat().st_size == info["size"] and _sha256(path) == info["sha256"]:
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for p in (path, sidecar):
        p.unlink(missing_ok=True)
    return None


def write_verified(tmp: Path, path: Path, info: dict) -> None:
    """Publish an exported file: checksum, sidecar, then atomic renames (file first, so a sidecar
    never describes a file that is not there yet)."""
    info = {**info, "size": tmp.stat().st_size, "sha256": _sha256(tmp), "created": time.time()}
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    side_tmp = path.with_name(path.name + f".{os.getpid()}.json.tmp")
    side_tmp.write_text(json.dumps(info, indent=1))
    replace_file(tmp, path)
    replace_file(side_tmp, path.with_suffix(".json"))


def _copy_verified(src: Path, dest: Path) -> bool:
    """Copy a verified model and its sidecar (hard link where possible); the copy is checked
    again before it is used. False, leaving nothing behind, when anything goes wrong."""
    import shutil

    info = read_verified(src)
    if info is None:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        write_verified(tmp, dest, {k: v for k, v in info.items() if k not in ("size", "sha256", "created")})
    except OSError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return read_verified(dest) is not None


def adopt_shared(path: Path, share: bool) -> bool:
    """Fill the store's cache from the user cache when it holds the same verified export."""
    user = user_cache_dir() if share else None
    if user is None or user.resolve() == path.parent.resolve():
        return False
    src = user / path.name
    if not src.exists() or not _copy_verified(src, path):
        return False
    try:
        os.utime(src)  # recently used: pruned last
    except OSError:
        pass
    return True


def publish_shared(path: Path, share: bool) -> None:
    """Offer a freshly verified export to the user cache; a cache that cannot be written is
    simply not used."""
    user = user_cache_dir() if share else None
    if user is None or user.resolve() == path.parent.resolve():
        return
    try:
        _copy_verified(path, user / path.name)
        prune(user)
    except OSError:
        pass


def prune(folder: Path, limit: int = USER_CACHE_MAX_BYTES) -> None:
    """Delete the least recently used models until the folder holds at most `limit` bytes."""
    models = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for m in models:
        total += m.stat().st_size
        if total > limit:
            m.unlink(missing_ok=True)
            m.with_suffix(".json").unlink(missing_ok=True)


def export_onnx(module, size: int, path: Path) -> None:
    """Trace `module` ((n,3,size,size) -> (n,dim)) to ONNX with a dynamic batch axis."""
    import torch

    example = torch.from_numpy(probe_batch(size))
    # Gradients on: without them nn.MultiheadAttention takes its fused inference kernel, which
    # has no ONNX form; tracing records the plain operations instead.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter needs no extra packages (the dynamo one needs onnxscript).
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["pixels"],
                          output_names=["features"], dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}},
                          opset_version=OPSET, do_constant_folding=True)


def quantize_int8(src: Path, dest: Path) -> None:
    """Dynamic int8 weights for the matrix products (useful for transformers without AMX)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])


def fp32_export_path(cache_dir: Path, backbone: str, fingerprint: str) -> Path:
    """Where the backbone's fp32 ONNX export lives in a store's cache (made or not)."""
    return Path(cache_dir) / "onnx" / (cache_stem(backbone, fingerprint, "fp32") + ".onnx")


def onnx_runner(*, cache_dir: Path, backbone: str, fingerprint: str, size: int, torch_module: Callable[[], object],
                reference: Callable[[np.ndarray], np.ndarray], first: np.ndarray | None, int8: bool = False,
                threads: int | None = None, micro_batch: int | None = None, share: bool = False) -> OnnxRunner:
    """A runner for the cached export, exporting (and verifying against `reference`) if needed.
    share: the weights have a stable identity, so the user cache may serve and keep the export."""
    fp32 = fp32_export_path(cache_dir, backbone, fingerprint)
    fp32.parent.mkdir(parents=True, exist_ok=True)
    failed = fp32.with_suffix(".failed")
    if failed.exists():  # an export that failed once fails again: do not pay for it on every start
        raise FallbackError(failed.read_text().strip() or "ONNX export failed before")
    def build(path: Path, make: Callable[[Path], None], min_cos: float, variant: str, disagree: str) -> None:
        """Make `path` through a temp file, keep it only if its vectors agree with `reference`."""
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        try:
            make(tmp)
            runner = OnnxRunner(tmp, threads)
            batch = verification_batch(first, size)
            cos = min_cosine(runner(batch), reference(batch))
            if not cos >= min_cos:
                raise FallbackError(f"{disagree} (cosine {cos:.4f})")
            del runner
            write_verified(tmp, path, {"backbone": backbone, "variant": variant, "versions": versions(),
                                       "verified_min_cosine": cos, "verified_images": int(len(batch))})
            publish_shared(path, share)
        finally:
            tmp.unlink(missing_ok=True)

    if read_verified(fp32) is None and not adopt_shared(fp32, share):
        try:
            build(fp32, lambda tmp: export_onnx(torch_module(), size, tmp), ONNX_MIN_COSINE, "fp32",
                  "the ONNX export disagrees with PyTorch")
        except FallbackError as e:
            failed.write_text(str(e))
            raise
        except Exception as e:
            message = f"cannot export to ONNX ({type(e).__name__}: {_one_line(e)})"
            failed.write_text(message)
            raise FallbackError(message) from e
    if not int8:
        return OnnxRunner(fp32, threads, "onnxruntime", micro_batch)
    q8 = fp32.parent / (cache_stem(backbone, fingerprint, "int8") + ".onnx")
    if read_verified(q8) is None and not adopt_shared(q8, share):
        try:
            build(q8, lambda tmp: quantize_int8(fp32, tmp), REDUCED_MIN_COSINE, "int8",
                  "int8 quantisation changes the vectors too much")
        except FallbackError:
            raise
        except Exception as e:
            raise FallbackError(f"cannot quantise to int8 ({type(e).__name__}: {_one_line(e)})") from e
    return OnnxRunner(q8, threads, "onnxruntime-int8", micro_batch)


# -- PyTorch ---------------------------------------------------------------------------------
class TorchRunner:
    """PyTorch eager on the CPU; `dtype=bfloat16` casts a private copy of the tower's weights."""

    def __init__(self, module, *, bf16: bool = False, channels_last: bool = False):
        import torch

        self.module = module
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.channels_last = channels_last
        self.label = "torch-bf16" if bf16 else "torch"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.dtype != torch.float32:
                x = x.to(self.dtype)
            return self.module(x).float().numpy()


def bf16_runner(module, reference: Callable[[np.ndarray], np.ndarray], first: np.ndarray | None, size: int
                ) -> TorchRunner:
    import copy

    import torch

    if not torch.backends.mkldnn.is_available():
        raise FallbackError("PyTorch was built without oneDNN")
    runner = TorchRunner(copy.deepcopy(module).to(torch.bfloat16).eval(), bf16=True)
    batch = verification_batch(first, size)
    cos = min_cosine(runner(batch), reference(batch))
    if not cos >= REDUCED_MIN_COSINE:
        raise FallbackError(f"bfloat16 changes the vectors too much (cosine {cos:.4f})")
    return runner


def notice(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"organizer: {message}", file=sys.stderr)


def _one_line(e: object, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
