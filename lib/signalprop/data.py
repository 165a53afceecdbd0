"""Image data sets of the training experiments: MNIST, Fashion-MNIST and CIFAR-10, read offline.

Xiao et al. (2018), section 3 (Experiments), train on MNIST (28 x 28 x 1) and CIFAR-10
(32 x 32 x 3); the authors' demo uses MNIST.  This module reads the files in
their original distribution formats with its own readers (no network, no
torchvision needed):

* **IDX** (MNIST, Fashion-MNIST): ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``; gzip is
  recognised by its magic bytes); the variant spelling ``train-images.idx3-ubyte``
  is accepted too.  See :func:`read_idx`.
* **CIFAR-10 python pickles**: a folder ``cifar-10-batches-py`` (or the batch
  files themselves) with ``data_batch_1`` ... ``data_batch_5`` (training) and
  ``test_batch``; each a pickled dict with ``data`` (``10000 x 3072`` uint8,
  the red, green and blue 32 x 32 planes of one image per row) and ``labels``.

Where the files are looked for (:func:`candidate_dirs`), first match wins:

1. ``root``, when given, and ``root/<name>``; nothing else is searched then;
2. ``$TTL_DATA/<name>``, when the environment variable ``TTL_DATA`` is set;
3. ``/usr/share/datasets/<name>`` (where Debian's ``dataset-fashion-mnist``
   package installs Fashion-MNIST);
4. ``~/.cache/ten-thousand-layers/<name>`` (where ``download=True`` puts files).

``<name>`` is the canonical name: ``mnist``, ``fashion-mnist`` or ``cifar10``.
Inside each of these folders the files may also sit in the sub-folder that
torchvision's downloader makes (``MNIST/raw``, ``FashionMNIST/raw``,
``cifar-10-batches-py``).

Preprocessing (:func:`load_dataset`): pixels are scaled to ``[0, 1]``
(``uint8 / 255``) and then, by default, standardised per channel,
``(x - mean_c) / std_c``, with the mean and the (population) standard deviation
of channel ``c`` over every pixel of every image of the **training split**,
whichever split is loaded, so the test split sees the training statistics.  No
augmentation.  The paper does not state its preprocessing; per-channel standardisation is our
choice.  It keeps the input of the first layer at unit variance per channel, which matches the unit-variance
inputs that the critical initialisation assumes.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import TensorDataset

__all__ = [
    "DatasetSpec",
    "DATASETS",
    "DatasetNotFoundError",
    "ImageDataset",
    "canonical_name",
    "dataset_spec",
    "candidate_dirs",
    "find_dataset_dir",
    "read_idx",
    "load_raw",
    "channel_stats",
    "load_dataset",
    "subset_indices",
    "subset",
]

SPLITS = ("train", "test")
ENV_VAR = "TTL_DATA"
SYSTEM_DIR = Path("/usr/share/datasets")


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "ten-thousand-layers"


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set holds and how its files are laid out.

    Attributes
    ----------
    name : str
        Canonical name (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``).
    channels, image_size, num_classes : int
        Images are ``channels x image_size x image_size``; labels ``0 .. num_classes - 1``.
    n_train, n_test : int
        Sizes of the official splits.
    class_names : tuple of str
    layout : {"idx", "cifar-pickle"}
        File format.
    torchvision_class : str
        The :mod:`torchvision.datasets` class that can download it.
    torchvision_folder : str
        The folder, below the download root, where that class puts the files.
    """

    name: str
    channels: int
    image_size: int
    num_classes: int
    n_train: int
    n_test: int
    class_names: tuple[str, ...]
    layout: str
    torchvision_class: str
    torchvision_folder: str


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", 1, 28, 10, 60000, 10000, tuple(str(i) for i in range(10)), "idx", "MNIST", "MNIST/raw"
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        1,
        28,
        10,
        60000,
        10000,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "idx",
        "FashionMNIST",
        "FashionMNIST/raw",
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        3,
        32,
        10,
        50000,
        10000,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "cifar-pickle",
        "CIFAR10",
        "cifar-10-batches-py",
    ),
}

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

_IDX_STEMS = {
    "train": ("train-images", "idx3-ubyte", "train-labels", "idx1-ubyte"),
    "test": ("t10k-images", "idx3-ubyte", "t10k-labels", "idx1-ubyte"),
}
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not in any searched folder; the message says how to get them."""


def canonical_name(name: str) -> str:
    """The canonical name of a data set (case-insensitive; ``"Fashion-MNIST"``, ``"CIFAR-10"`` work).

    Raises
    ------
    ValueError
        If ``name`` is not one of MNIST, Fashion-MNIST, CIFAR-10.
    """
    if not isinstance(name, str) or name.strip().lower() not in _ALIASES:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    return _ALIASES[name.strip().lower()]


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (see :func:`canonical_name`)."""
    return DATASETS[canonical_name(name)]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


# --- Finding files --------------------------------------------------------------------------


def candidate_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for data set ``name``, in order (see the module docstring).

    Parameters
    ----------
    name : str
    root : path-like, optional
        When given, only ``root``, ``root/<name>`` and the torchvision sub-folders
        below them are searched.

    Returns
    -------
    list of Path
        Every folder where the data files may lie directly.
    """
    spec = dataset_spec(name)
    if root is not None:
        bases = [Path(root).expanduser(), Path(root).expanduser() / spec.name]
    else:
        bases = []
        env = os.environ.get(ENV_VAR)
        if env:
            bases.append(Path(env).expanduser() / spec.name)
        bases += [SYSTEM_DIR / spec.name, _cache_dir() / spec.name]
    return [d for base in bases for d in (base, base / spec.torchvision_folder)]


def _idx_file(folder: Path, stem: str, kind: str) -> Path | None:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            path = folder / f"{stem}{sep}{kind}{suffix}"
            if path.is_file():
                return path
    return None


def _split_files(spec: DatasetSpec, folder: Path, split: str) -> list[Path] | None:
    """The files of ``split`` in ``folder`` (IDX: images, labels), or ``None`` if any is missing."""
    if spec.layout == "idx":
        img_stem, img_kind, lab_stem, lab_kind = _IDX_STEMS[split]
        files = [_idx_file(folder, img_stem, img_kind), _idx_file(folder, lab_stem, lab_kind)]
    else:
        files = [folder / f if (folder / f).is_file() else None for f in _CIFAR_FILES[split]]
    return None if any(f is None for f in files) else files  # type: ignore[return-value]


def _how_to_get(spec: DatasetSpec) -> str:
    if spec.layout == "idx":
        layout = (
            "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte (each may be gzipped, '.gz')"
        )
    else:
        layout = "a folder cifar-10-batches-py holding data_batch_1 ... data_batch_5 and test_batch (python pickles)"
    tv = (
        f"load_dataset({spec.name!r}, download=True) (needs torchvision and network access; "
        f"it stores torchvision.datasets.{spec.torchvision_class}'s files under root or "
        f"{_cache_dir() / spec.name})"
    )
    if spec.name == "fashion-mnist":
        get = (
            "install Debian's package: 'apt-get update && apt-get install -y dataset-fashion-mnist' "
            f"(files land in {SYSTEM_DIR / spec.name}), or call {tv}"
        )
    else:
        get = f"call {tv}, or copy the files there yourself"
    return (
        f"Expected layout: {layout}, in root, root/{spec.name}, ${ENV_VAR}/{spec.name}, "
        f"{SYSTEM_DIR / spec.name} or {_cache_dir() / spec.name} (or torchvision's sub-folder "
        f"{spec.torchvision_folder} below one of them). To get it: {get}."
    )


def find_dataset_dir(name: str, split: str = "train", root: str | os.PathLike | None = None) -> Path:
    """The first folder of :func:`candidate_dirs` that holds every file of ``split``.

    Raises
    ------
    ValueError
        Unknown data set or split.
    DatasetNotFoundError
        (a :class:`FileNotFoundError`) if no searched folder has the files; the
        message lists the folders, the expected layout and how to get the data.
    """
    spec = dataset_spec(name)
    _check_split(split)
    dirs = candidate_dirs(spec.name, root)
    for d in dirs:
        if d.is_dir() and _split_files(spec, d, split) is not None:
            return d
    searched = ", ".join(str(d) for d in dirs)
    raise DatasetNotFoundError(
        f"data set {spec.name!r} ({split} split) not found; searched: {searched}. {_how_to_get(spec)}"
    )


# --- Readers -------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> NDArray:
    """Read an IDX file (the MNIST format), plain or gzipped.

    Format (LeCun et al., MNIST database page): two zero bytes; one byte giving
    the element type (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
    ``0x0D`` float32, ``0x0E`` float64); one byte giving the number of dimensions
    ``d``; ``d`` big-endian uint32 sizes; then the elements, big-endian, in C order.
    A gzipped file is recognised by its first two bytes (``1f 8b``), whatever its name.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray
        Shape given by the header, native byte order.

    Raises
    ------
    ValueError
        A bad magic number, an unknown type code, or a payload whose length does
        not match the header (truncated or with trailing bytes).
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the magic number must start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type code 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions announced)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(raw) - header} bytes, the header {shape} implies {expected - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _read_cifar_batch(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    # The CIFAR-10 python batches are pickles; they are only read from folders the user points to.
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a pickled dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', has {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{path}: CIFAR-10 'data' must be uint8 of shape (n, 3072) with n labels, got {data.dtype} "
            f"{data.shape} and {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _download(spec: DatasetSpec, root: str | os.PathLike | None) -> None:
    target = Path(root).expanduser() if root is not None else _cache_dir() / spec.name
    try:
        import torchvision.datasets as tvd
    except ImportError as err:  # pragma: no cover - torchvision is pinned in requirements.txt
        raise DatasetNotFoundError(
            f"download=True needs torchvision, which is not installed. {_how_to_get(spec)}"
        ) from err
    cls = getattr(tvd, spec.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(target), train=train, download=True)
    except Exception as err:  # network errors come in many types; say what to do instead
        raise DatasetNotFoundError(
            f"downloading {spec.name!r} with torchvision.datasets.{spec.torchvision_class} into {target} failed "
            f"({type(err).__name__}: {err}). {_how_to_get(spec)}"
        ) from err


def load_raw(
    name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The images and labels of one split as stored: ``uint8 (N, C, H, W)`` and ``int64 (N,)``.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"`` (see :func:`canonical_name`).
    split : {"train", "test"}
    root : path-like, optional
        Folder to read from (and to download into); see :func:`candidate_dirs`.
    download : bool
        If the files are not found, download them with torchvision into ``root``
        or ``~/.cache/ten-thousand-layers/<name>`` first.

    Raises
    ------
    ValueError
        Unknown data set or split; files of the wrong format, shape or label range.
    DatasetNotFoundError
        The files are not found (and ``download`` is false or failed).
    """
    spec = dataset_spec(name)
    _check_split(split)
    return _read_split(spec, _find_or_download(spec, split, root, download), split)


def _read_split(spec: DatasetSpec, folder: Path, split: str) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    files = _split_files(spec, folder, split)
    assert files is not None
    if spec.layout == "idx":
        images, labels = read_idx(files[0]), read_idx(files[1])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (spec.image_size,) * 2:
            raise ValueError(
                f"{files[0]}: expected uint8 images of shape (n, {spec.image_size}, {spec.image_size}), got "
                f"{images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{files[1]}: expected {len(images)} labels, got shape {labels.shape}")
        images = images[:, None]
    else:
        parts = [_read_cifar_batch(f) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ValueError(
            f"{spec.name}: labels must lie in 0..{spec.num_classes - 1}, found {labels.min()}.."
            f"{labels.max()} in {folder}"
        )
    return np.ascontiguousarray(images), labels


# --- Statistics and the data set object ----------------------------------------------------------


def _stats_from_uint8(images: NDArray[np.uint8]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Exact per-channel mean and population std of ``images / 255``, from the 256-bin histogram."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(torch.from_numpy(images[:, c]).reshape(-1), minlength=256).double().numpy()
        n = counts.sum()
        m = counts @ levels / n
        var = counts @ (levels - m) ** 2 / n
        mean.append(m)
        std.append(np.sqrt(var))
    return np.array(mean), np.array(std)


_STATS_CACHE: dict[tuple, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}


def _train_stats(
    spec: DatasetSpec, folder: Path, images: NDArray[np.uint8] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Training statistics of the files in ``folder``, cached by file names, sizes and modification times.

    ``images``: the training images of ``folder`` when the caller has already read them.
    """
    files = _split_files(spec, folder, "train") or []
    key = (spec.name, str(folder), tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    if key not in _STATS_CACHE:
        if images is None:
            images, _ = load_raw(spec.name, "train", folder)
        if len(_STATS_CACHE) >= 16:
            _STATS_CACHE.clear()
        _STATS_CACHE[key] = _stats_from_uint8(images)
    mean, std = _STATS_CACHE[key]
    if np.min(std) == 0:
        raise ValueError(f"{spec.name}: a channel of the training images in {folder} is constant (std 0)")
    return mean, std


def _find_or_download(spec: DatasetSpec, split: str, root: str | os.PathLike | None, download: bool) -> Path:
    try:
        return find_dataset_dir(spec.name, split, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(spec, root)
        return find_dataset_dir(spec.name, split, root)


def channel_stats(
    name: str, root: str | os.PathLike | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of the **training** images scaled to ``[0, 1]``.

    Over all training images and pixels; the standard deviation is the
    population one (divisor ``N H W``).  Computed exactly from the pixel
    histogram, cached per folder.

    Parameters
    ----------
    name : str
    root : path-like, optional
    download : bool
        As for :func:`load_dataset`.

    Returns
    -------
    (mean, std) : tuple of torch.Tensor
        float64, shape ``(C,)``.

    Raises
    ------
    ValueError
        If a channel is constant (standard deviation 0): it cannot be standardised.
    DatasetNotFoundError
        The training split is not found.
    """
    spec = dataset_spec(name)
    mean, std = _train_stats(spec, _find_or_download(spec, "train", root, download))
    return torch.from_numpy(mean.copy()), torch.from_numpy(std.copy())


class ImageDataset(TensorDataset):
    """Images ``x`` (float32, ``(N, C, H, W)``) and labels ``y`` (int64, ``(N,)``) of one split.

    A :class:`torch.utils.data.TensorDataset` (item ``i`` is ``(x[i], y[i])``)
    that also records where it came from.

    Attributes
    ----------
    x, y : torch.Tensor
    spec : DatasetSpec
    split : str
    mean, std : torch.Tensor or None
        The per-channel training statistics (float64, ``(C,)``) that ``x`` was
        standardised with; ``None`` when it is only scaled to ``[0, 1]``.
    indices : torch.Tensor or None
        For a :func:`subset`, the rows of the full split it holds (int64).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        spec: DatasetSpec,
        split: str,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"x must be (N, C, H, W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
        super().__init__(x, y)
        self.spec, self.split, self.mean, self.std, self.indices = spec, split, mean, std, indices

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.spec.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.x.shape[1:])}, standardised={self.normalized})"
        )


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    *,
    normalize: bool = True,
) -> ImageDataset:
    """Load one split of MNIST, Fashion-MNIST or CIFAR-10 as float tensors.

    Pixels are scaled to ``[0, 1]`` and, if ``normalize``, standardised per
    channel with the statistics of the training split (:func:`channel_stats`),
    as described in the module docstring.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"`` (aliases: see :func:`canonical_name`).
    split : {"train", "test"}
    root : path-like, optional
        Where to look (only there, when given); otherwise ``$TTL_DATA/<name>``,
        ``/usr/share/datasets/<name>``, ``~/.cache/ten-thousand-layers/<name>``.
    download : bool
        Download with torchvision when not found (MNIST, Fashion-MNIST, CIFAR-10).
    normalize : bool
        Standardise per channel (default) or only scale to ``[0, 1]``.

    Returns
    -------
    ImageDataset
        ``x`` float32 ``(N, C, H, W)``, ``y`` int64 ``(N,)``.

    Raises
    ------
    ValueError
        Unknown data set or split, or malformed files.
    DatasetNotFoundError
        (a :class:`FileNotFoundError`) the files are missing; the message says how to get them.

    Examples
    --------
    >>> train = load_dataset("fashion-mnist", "train")        # doctest: +SKIP
    >>> train.x.shape, train.y.shape                          # doctest: +SKIP
    (torch.Size([60000, 1, 28, 28]), torch.Size([60000]))
    """
    spec = dataset_spec(name)
    _check_split(split)
    folder = _find_or_download(spec, split, root, download)
    images, labels = _read_split(spec, folder, split)
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    mean = std = None
    if normalize:
        if split == "train":
            stats = _train_stats(spec, folder, images)
        else:
            stats = _train_stats(spec, _find_or_download(spec, "train", root, download))
        mean, std = (torch.from_numpy(a.copy()) for a in stats)
        x.sub_(mean.to(torch.float32).view(1, -1, 1, 1)).div_(std.to(torch.float32).view(1, -1, 1, 1))
    return ImageDataset(x, torch.from_numpy(labels), spec=spec, split=split, mean=mean, std=std)


# --- Subsets ----------------------------------------------------------------------------------


def subset_indices(
    labels: torch.Tensor | NDArray, n: int, seed: int = 0, *, stratified: bool = False, num_classes: int | None = None
) -> torch.Tensor:
    """Rows of a deterministic random subset of size ``n``, sorted ascending.

    A permutation of all rows is drawn with ``torch.Generator().manual_seed(seed)``;
    the subset is its first ``n`` rows, or, if ``stratified``, the first
    ``n / num_classes`` rows of each class in permutation order.  So for one
    seed a smaller subset is contained in a larger one.

    Parameters
    ----------
    labels : tensor or array of int, shape (N,)
    n : int
        ``1 <= n <= N``; if ``stratified``, a multiple of ``num_classes``.
    seed : int
    stratified : bool
        Equal numbers of every class.
    num_classes : int, optional
        Default ``max(labels) + 1``.

    Returns
    -------
    torch.Tensor
        int64, shape ``(n,)``.

    Raises
    ------
    ValueError
        ``n`` out of range; with ``stratified``, ``n`` not a multiple of the number
        of classes or a class with too few examples.
    """
    y = torch.as_tensor(labels).reshape(-1)
    total = len(y)
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= total:
        raise ValueError(f"n must be an integer in 1..{total}, got {n!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
    if not stratified:
        return perm[: int(n)].sort().values
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if n % k:
        raise ValueError(f"a stratified subset needs n divisible by the {k} classes, got n={n}")
    per_class = int(n) // k
    y_perm = y[perm]
    chosen = []
    for c in range(k):
        rows = perm[y_perm == c]
        if len(rows) < per_class:
            raise ValueError(f"class {c} has {len(rows)} examples, fewer than the {per_class} asked for")
        chosen.append(rows[:per_class])
    return torch.cat(chosen).sort().values


def subset(dataset: ImageDataset, n: int, seed: int = 0, *, stratified: bool = False) -> ImageDataset:
    """A deterministic random subset of ``n`` examples (see :func:`subset_indices`), in the original order.

    The standardisation is kept as it was (statistics of the *full* training
    split), so a subset's pixels equal the same rows of the full data set.
    ``indices`` of the result are rows of the full split (composed when
    subsetting a subset).
    """
    if not isinstance(dataset, ImageDataset):
        raise ValueError(f"dataset must be an ImageDataset, got {type(dataset).__name__}")
    rows = subset_indices(dataset.y, n, seed, stratified=stratified, num_classes=dataset.spec.num_classes)
    full_rows = rows if dataset.indices is None else dataset.indices[rows]
    return ImageDataset(
        dataset.x[rows],
        dataset.y[rows],
        spec=dataset.spec,
        split=dataset.split,
        mean=dataset.mean,
        std=dataset.std,
        indices=full_rows,
    )
