"""Reading official checkpoints into registry models; every stage loads weights through here."""

from __future__ import annotations

import argparse
import collections
import functools
import io
import pathlib
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from focalinfer.errors import FocalinferError, first_line
from focalinfer.util import atomic_path

# Wrappers the official repos and common trainers use, in order of preference.
WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module")
SHOW_KEYS = 5


class CheckpointError(FocalinferError):
    pass


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Load a checkpoint file safely and unwrap it; returns (state_dict, layout)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint; pass the path of the official .pth file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass the path of the official .pth file")
    obj = _torch_load(path)
    layout = "raw"
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and _is_tensor_dict(obj[key]):
                obj, layout = obj[key], key
                break
    if not isinstance(obj, dict) or not _is_tensor_dict(obj):
        raise CheckpointError(
            f"{path}: holds no state dict (top-level keys: {_preview(obj)}); "
            "save weights with torch.save(model.state_dict())"
        )
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return state, layout


def _metadata_globals() -> list:
    """Harmless containers that training scripts save beside the weights.

    The official trainers store their arguments (DeiT/timm: ``argparse.Namespace``; Swin/Focal:
    a yacs ``CfgNode``, a dict subclass) and numpy scalars in the checkpoint, and ``args`` often
    holds paths. Allowing exactly these keeps ``weights_only=True``: a CfgNode is rebuilt as a
    plain OrderedDict, a path as a pure path (no file system access), nothing is imported from the
    file and no code runs.
    """
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    paths = [(pure, f"{module}.{kind}Path") for kind, pure in (("Posix", pathlib.PurePosixPath),
                                                               ("Windows", pathlib.PureWindowsPath))
             for module in ("pathlib", "pathlib._local")]
    return [
        argparse.Namespace,
        (collections.OrderedDict, "yacs.config.CfgNode"),
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")),
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        *paths,
    ]


# How every file torch.save writes begins: a zip archive (torch ≥ 1.6) or a pickle (legacy).
CHECKPOINT_MAGICS = (b"PK\x03\x04", b"\x80")


def _torch_load(path: Path):
    _check_magic(path)
    try:
        with torch.serialization.safe_globals(_metadata_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if unsupported:  # a class or function inside: refuse, never import it
            name = unsupported.group(1)
            where = find_global(path, name)
            raise CheckpointError(
                f"{path}: {f'key {where!r}' if where else 'it'} holds a pickled {name} object, not a tensor or "
                "plain metadata; focalinfer loads weights only (weights_only=True) and does not import it — re-save "
                "the weights with torch.save(model.state_dict(), path)"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(e)}); re-download or re-save it") from None
    except Exception as e:  # torch's unpickler fails on damaged files with any error type (KeyError: 101 …)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, truncated or corrupt ({_reason(e)}); re-download or re-save it"
        ) from None


def _check_magic(path: Path) -> None:
    """A text file or other non-checkpoint gets one clear line before torch's unpickler sees it."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    if not head.startswith(CHECKPOINT_MAGICS):
        what = "an empty file" if not head else f"a file that starts with {head[:12]!r}"
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({what}; torch.save writes a zip archive or a pickle); "
            "pass the official .pth file"
        )
    if head.startswith(CHECKPOINT_MAGICS[0]):
        _check_archive(path)


def _check_archive(path: Path) -> None:
    """A zip that torch.save did not write (it holds ``<name>/data.pkl``) is named as what it is."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint: a damaged zip archive ({_reason(e)}; a truncated "
            "download?); re-download or re-save it"
        ) from None
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        shown = ", ".join(names[:SHOW_KEYS]) + (f" (+{len(names) - SHOW_KEYS} more)" if len(names) > SHOW_KEYS else "")
        raise CheckpointError(
            f"{path}: a zip archive of {len(names)} other files ({shown or 'none'}), not a PyTorch checkpoint "
            "(torch.save's archives hold <name>/data.pkl); pass the .pth file itself (unzip it first if it is inside)"
        )


class _Stub:
    """Stands in for any global a pickle names, so its structure can be walked without importing
    or running anything from the file."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ calls only this, REDUCE this and __init__
        stub = object.__new__(cls)
        stub.children = list(args)
        return stub

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.children.append(state)

    def __setitem__(self, key, value):
        self.children.append({key: value})

    def append(self, value):
        self.children.append(value)

    def extend(self, values):
        self.children.extend(values)


class _SkeletonUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return type("Stub", (_Stub,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        return None  # tensor storages: not read


def find_global(path: Path, name: str) -> str | None:
    """The key path ('args.output_dir') of the first object of type ``name`` in a torch.save zip,
    or None; the pickle is read with stubs only (see _Stub)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            tree = _SkeletonUnpickler(io.BytesIO(archive.read(pkl))).load()
    except Exception:  # anything odd: the message names the type only
        return None
    return _key_path(tree, name)


def _key_path(node, name: str, where: str = "", depth: int = 0) -> str | None:
    """'args.output_dir', 'history[1]': where below ``node`` the first object of type ``name`` is."""
    if depth > 50:
        return None
    if isinstance(node, _Stub):
        if node.qualname == name:
            return where or None
        children = [(where, c) for c in node.children]  # a Namespace's state: its keys follow
    elif isinstance(node, dict):
        children = [(f"{where}.{k}" if where else str(k), v) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        children = [(f"{where}[{i}]", v) for i, v in enumerate(node)]
    else:
        return None
    for child_where, child in children:
        found = _key_path(child, name, child_where, depth + 1)
        if found:
            return found
    return None


def _reason(e: BaseException) -> str:
    return first_line(e).split(". ")[0][:120]


def _is_tensor_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) for k in d) and any(
        isinstance(v, torch.Tensor) for v in d.values()
    )


def _preview(obj) -> str:
    if isinstance(obj, dict):
        return ", ".join(map(str, list(obj)[:SHOW_KEYS])) or "none"
    return type(obj).__name__


@dataclass(frozen=True)
class KeyReport:
    missing: list[str]
    unexpected: list[str]
    mis_shaped: list[str]  # "key: checkpoint (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def describe(self) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("mis-shaped", self.mis_shaped)):
            if keys:
                more = f" (+{len(keys) - SHOW_KEYS} more)" if len(keys) > SHOW_KEYS else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:SHOW_KEYS])}{more}")
        return "; ".join(parts)


def compare_keys(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> KeyReport:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    return KeyReport(missing, unexpected, mis_shaped)


def load_model(name_or_spec, path: str | Path, strict: bool = True, **build_kwargs):
    """Build the registry model and load the checkpoint into it; returns the eval-mode model."""
    from focalinfer.registry import ModelSpec, get_model_spec

    spec = name_or_spec if isinstance(name_or_spec, ModelSpec) else get_model_spec(name_or_spec)
    state, _ = read_state_dict(path)
    model = spec.build(**build_kwargs)
    if spec.checkpoint_filter is not None:
        try:
            state = spec.checkpoint_filter(state, model)
        except FocalinferError as e:
            raise CheckpointError(f"{path}: {e}") from None
    report = compare_keys(state, model.state_dict())
    if strict and not report.ok:
        head = head_classes(_shapes(state), _shapes(model.state_dict()))
        if head is not None:
            raise CheckpointError(
                f"{path}: its classifier head has {head[0]} classes, {spec.name} as built has {head[1]} (a "
                f"fine-tuned checkpoint?); pass --num-classes {head[0]} to build {spec.name} with a {head[0]}-class head"
            )
        guess = guess_model(state)
        hint = (
            f"; this looks like {guess} — pass --model {guess}"
            if guess and guess != spec.name
            else "; is this checkpoint from the official code of this model?"
        )
        raise CheckpointError(f"{path}: does not fit {spec.name}: {report.describe()}{hint}")
    _check_dtypes(path, state, model.state_dict())
    model.load_state_dict(state, strict=strict)
    return model.eval()


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def head_classes(checkpoint: dict[str, tuple], model: dict[str, tuple]) -> tuple[int, int] | None:
    """(the checkpoint's classes, the model's) when only the classifier head differs: the same
    keys, and every mis-shaped tensor differs in its first dimension only, one count for another
    (Evo-LeViT's four heads included). None for any other mismatch."""
    if set(checkpoint) != set(model):
        return None
    pairs = set()
    for key, shape in checkpoint.items():
        want = model[key]
        if shape == want:
            continue
        if len(shape) != len(want) or not shape or shape[1:] != want[1:]:
            return None
        pairs.add((shape[0], want[0]))
    return pairs.pop() if len(pairs) == 1 else None


def _check_dtypes(path, state, expected) -> None:
    for key, ref in expected.items():
        got = state.get(key)
        if got is not None and got.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(
                f"{path}: {key} has dtype {got.dtype}, the model needs {ref.dtype}; the checkpoint is not from this model"
            )


def _meta_model(name: str):
    """The registry model built on the meta device (no memory, no init cost), or None."""
    from focalinfer.registry import get_model_spec

    try:
        with torch.device("meta"):
            return get_model_spec(name).builder()
    except Exception:  # a builder that needs real tensors at init cannot be built this way
        return None


@functools.lru_cache(maxsize=None)
def registry_key_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    """Key → shape of a registry model's state dict."""
    model = _meta_model(name)
    return None if model is None else {k: tuple(v.shape) for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def parameter_count(name: str) -> int | None:
    model = _meta_model(name)
    return None if model is None else sum(p.numel() for p in model.parameters())


def guess_model(state: dict[str, torch.Tensor], min_score: float = 0.9) -> str | None:
    """The registry model whose (key, shape) set best matches ``state``, if one matches well."""
    from focalinfer.registry import model_names

    have = {(k, tuple(v.shape)) for k, v in state.items()}
    best, best_score = None, 0.0
    for name in model_names():
        shapes = registry_key_shapes(name)
        if not shapes:
            continue
        want = set(shapes.items())
        score = len(have & want) / len(have | want)
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= min_score else None


def wrap_state_dict(state_dict: dict, layout: str) -> dict:
    """Wrap a state dict the way the official release does ('model', 'state_dict' or 'raw')."""
    return state_dict if layout == "raw" else {layout: state_dict}


def save_checkpoint(state_dict: dict, path: str | Path, layout: str) -> Path:
    """Save a state dict wrapped in ``layout`` ('model', 'state_dict' or 'raw'), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(wrap_state_dict(state_dict, layout), tmp)
    return path


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    layout: str
    keys: int
    aliases: int  # keys that name a tensor an earlier key already holds (counted once)
    parameters: int  # elements of the distinct parameter tensors (the model's, when it matches)
    tensors_bytes: int  # bytes of the distinct tensor storages in the file
    model: str | None  # the registry model whose keys and shapes it matches
    num_classes: int | None = None  # its classifier head's classes, when they are not the model's
    model_classes: int | None = None  # the registered model's classes (set with num_classes)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def describe_match(self) -> str:
        """One line: the registered model it fits, and how to export it when its head differs."""
        if self.model is None:
            return "matches: no registered model"
        if self.num_classes is None:
            return f"matches: {self.model}"
        return (f"matches: {self.model} with a {self.num_classes}-class head (registered: {self.model_classes} "
                f"classes); export it with --model {self.model} --num-classes {self.num_classes}")


def _tensor_identity(tensor: torch.Tensor):
    """Same storage, offset, shape, stride and dtype = one tensor saved under two keys."""
    if tensor.numel() == 0:
        return None
    return tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype


def distinct_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the keys that alias an earlier key's tensor (torch.save keeps sharing)."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ident = _tensor_identity(tensor)
        if ident is not None and ident in seen:
            continue
        seen.add(ident)
        out[key] = tensor
    return out


def _storage_bytes(state: dict[str, torch.Tensor]) -> int:
    storages = {}
    for tensor in state.values():
        storage = tensor.untyped_storage()
        storages[storage.data_ptr() or id(storage)] = storage.nbytes()
    return sum(storages.values())


@functools.lru_cache(maxsize=None)
def registry_parameter_keys(name: str) -> frozenset[str] | None:
    """Every state-dict key that names a parameter (not a buffer) of a registry model."""
    model = _meta_model(name)
    return None if model is None else frozenset(k for k, _ in model.named_parameters(remove_duplicate=False))


def _is_parameter_like(key: str, tensor: torch.Tensor) -> bool:
    """Without a matching model: floating-point tensors that are not BatchNorm statistics."""
    return tensor.is_floating_point() and not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    state, layout = read_state_dict(path)
    model = guess_model(state)
    param_keys = registry_parameter_keys(model) if model else None
    distinct = distinct_tensors(state)
    is_param = (lambda k, v: k in param_keys) if param_keys else _is_parameter_like
    head = head_classes(_shapes(state), registry_key_shapes(model)) if model else None
    return CheckpointInfo(
        path=str(path),
        layout=layout,
        keys=len(state),
        aliases=len(state) - len(distinct),
        parameters=sum(v.numel() for k, v in distinct.items() if is_param(k, v)),
        tensors_bytes=_storage_bytes(state),
        model=model,
        num_classes=head[0] if head else None,
        model_classes=head[1] if head else None,
    )
