"""Reading a space file: YAML, plugins, validation errors that name file and key, the dataset and feasibility checks."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .._budget import Budget
from .._errors import ConfigError
from ._schema import EMBEDDED, Candidate, Space, SpaceError


def _format_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def load_space(path: str | Path, check_data: bool = True) -> Space:
    """Read and validate a space file; :class:`SpaceError` names the file, key and allowed values.

    ``check_data=False`` skips looking for the dataset's files (to validate a space on a
    machine that does not hold its data); every other check still runs.
    """
    path = Path(path)
    return check_space(read_space(path), path, check_data)


def read_space(path: str | Path) -> Space:
    """The space file read and validated against the schema alone (its plugins loaded): nothing is built and no
    dataset looked for. :func:`check_space` does the rest; ``run`` refuses what a machine cannot give in between."""
    from ..plugins import PluginError, load_plugins

    path = Path(path)
    raw = _read_yaml(path)
    try:
        load_plugins(raw.get("plugins") or [])
    except PluginError as e:
        raise SpaceError(f"{path}: plugins: {e}") from None
    try:
        space = Space.model_validate(raw)
    except ValidationError as e:
        raise SpaceError("\n".join(_error_lines(path, e))) from None
    return _absolute_root(space)


def check_space(space: Space, path: str | Path, check_data: bool = True) -> Space:
    """The checks beyond the schema: the dataset's files (unless ``check_data`` is False) and every candidate's
    feasibility (each architecture built on the meta device)."""
    path = Path(path)
    if check_data:
        _check_dataset(space, path)
    _check_feasible(space, path)
    return space


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SpaceError(f"{path}: no such space file")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read the space file as UTF-8 text: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: a space is a mapping with keys {', '.join(Space.model_fields)}; got {type(raw).__name__}")
    return raw


def _error_lines(path: Path, e: ValidationError) -> list[str]:
    lines = []
    for err in e.errors():
        key = _format_loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = _format_loc(err["loc"][:-1])
            msg = f"unknown key; allowed keys{' under ' + parent if parent else ''}: {', '.join(_allowed_keys(parent))}"
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # a config's rule: its field is a key under the section that checked it
            key = space_key(key, cause)
        lines.append(f"{path}: {key}: {msg}" if key else f"{path}: {msg}")
    return lines


def space_key(section: str, err: ConfigError) -> str:
    """The key of a space file that holds the field a ConfigError names, ``section`` being the key of what checked it:
    ``train`` and ``momentum`` give ``train.momentum``; a field check (``space.bits``, ``bits``) is that key already,
    and a rule's part under it (``space.scope``, ``scope.include``) is ``space.scope.include``."""
    parts = err.field.split(".")
    if section and section.split(".")[-1] == parts[0]:
        parts = parts[1:]
    return ".".join([section, *parts] if section else parts)


def dataset_root(space: Space) -> Path | None:
    """The dataset root as an absolute path; a relative root is taken from the current directory.

    :func:`load_space` applies this once, where the user stands, so the run's space.yaml and
    every trial (which runs in a folder of its own) carry the absolute root.
    """
    if not space.dataset.root:
        return None
    return Path(space.dataset.root).expanduser().resolve()


def _absolute_root(space: Space) -> Space:
    """The dataset root and a teacher file made absolute, as taken from the current directory: every trial runs in a
    folder of its own, and the run's space.yaml must name the same files."""
    kd = space.train.distill
    if kd is not None and kd.teacher != "dense" and not Path(kd.teacher).is_absolute():
        teacher = str(Path(kd.teacher).expanduser().resolve())
        space = space.model_copy(
            update={"train": space.train.model_copy(update={"distill": kd.model_copy(update={"teacher": teacher})})}
        )
    root = dataset_root(space)
    if root is None or str(root) == space.dataset.root:
        return space
    return space.model_copy(update={"dataset": space.dataset.model_copy(update={"root": str(root)})})


def _check_dataset(space: Space, path: Path) -> None:
    """A dataset that needs files must find them now, not in every trial."""
    from ..data import DatasetNotFound, load_dataset

    if space.dataset.name in EMBEDDED:
        return
    # with download: true this fetches the files, once, here in the driver (not in every trial at once)
    kw = {"download": True} if space.dataset.download else {}
    try:
        load_dataset(space.dataset.name, dataset_root(space), **kw)
    except DatasetNotFound as e:
        raise SpaceError(f"{path}: dataset.root: {e}") from None
    except OSError as e:  # a download that could not reach its server, a root that cannot be written
        raise SpaceError(
            f"{path}: dataset.download: could not fetch {space.dataset.name} into {space.dataset.root}: {e}"
        ) from None


def _allowed_keys(parent: str) -> list[str]:
    model: type[BaseModel] = Space
    for part in filter(None, parent.split(".")):
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        ann = next((a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)), ann)  # Optional[Model]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def meta_bases(space: Space) -> dict[str, Any]:
    """Each architecture of the space built on the meta device (shapes only, no memory)."""
    from ..models import create_model, on_meta

    kw = dataset_model_kwargs(space)
    out = {}
    for a in space.space.arch:
        try:
            with on_meta():
                out[a] = create_model(a, **kw(a))
        except ValueError:
            raise
        except Exception as e:  # a user factory that reads values while it builds (.item() on a meta tensor): build it for real
            try:
                out[a] = create_model(a, **kw(a))
            except Exception:
                raise ValueError(f"{a}: building it failed: {type(e).__name__}: {e}") from None
    return out


def applicable_candidates(space: Space, bases: dict[str, Any] | None = None) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, skipped): a pair whose budget is not below its architecture's size is not a
    compression and is skipped (a grid over B1..B4 x the sizes of B0..B2 pairs B1 with 9.1M)."""
    bases = bases or meta_bases(space)
    kept, skipped = [], []
    for c in space.candidates():
        total = sum(p.numel() for p in bases[c.arch].parameters())
        fits = c.budget is None or Budget.parse(c.budget).resolve(total) < total
        (kept if fits else skipped).append(c)
    return kept, skipped


def _check_feasible(space: Space, path: Path) -> None:
    """Every budget must be below some architecture it is paired with, and meetable wherever it is below."""
    from ..methods import METHODS, compress_shapes
    from ..methods._config import AXES, PRECISION_AXES

    try:
        bases = meta_bases(space)
        for arch, base in bases.items():
            _check_takes_data(space, arch, base)
    except ValueError as e:  # a user factory that returns no nn.Module, a model that cannot take the dataset's images, ...
        raise SpaceError(f"{path}: space.arch: {e}") from None
    kept, skipped = applicable_candidates(space, bases)
    problems = []
    for b in space.space.budget_values() or []:
        if any(c.budget == b for c in skipped) and not any(c.budget == b for c in kept):
            sizes = ", ".join(f"{a} {sum(p.numel() for p in m.parameters())}" for a, m in bases.items())
            problems.append(f"{path}: space.budget: budget {b!r} is not below any architecture's size ({sizes})")
    for c in kept:
        try:
            cfg = c.method_config()
            if cfg is None or cfg.method not in METHODS:  # dense, float32 or at a precision: nothing to meet
                continue
            planner = METHODS.get(cfg.method).planner
            if planner is not None:  # the builder's own arithmetic, no tensors made
                planner(bases[c.arch], cfg)
            else:  # methods without one: build on the meta device
                compress_shapes(bases[c.arch], cfg, lambda: _real_base(space, c.arch))
        except ConfigError as e:  # an axis's key (space.budget), or the option of the candidate's method entry
            key = f"space.{e.field}" if e.field.split(".")[0] in AXES + PRECISION_AXES else f"space.method.{c.method}.{e.field}"
            problems.append(f"{path}: {key}: {c.label()}: {e}")
        except ValueError as e:
            problems.append(f"{path}: space.method: {c.label()}: {e}")
    if problems:
        raise SpaceError("\n".join(problems))


def _check_takes_data(space: Space, arch: str, base) -> None:
    """A forward pass on the meta device (shapes only): the architecture must take the dataset's images and give one
    score per class. An op with no meta kernel proves nothing either way, and is left to the run."""
    import torch

    classes, channels, size = dataset_shape(space)
    if not all(p.is_meta for p in base.parameters()):
        return  # built on the CPU (its factory reads values): checked by the run
    try:
        with torch.no_grad():
            out = base.eval()(torch.empty(2, channels, size, size, device="meta"))
    except NotImplementedError:
        return
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "meta" in first.lower():  # an op that reads values (.item()) cannot run on shapes alone
            return
        raise ValueError(f"{arch} cannot take {space.dataset.name}'s {channels}x{size}x{size} images: {first}") from None
    finally:
        base.train()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{arch} gives {got} for a batch of 2 {space.dataset.name} images, not (2, {classes}) class scores "
                         "(a factory that takes num_classes gets the dataset's)")


def _real_base(space: Space, arch: str):
    from ..models import create_model

    return create_model(arch, **dataset_model_kwargs(space)(arch))


def dataset_shape(space: Space) -> tuple[int, int, int]:
    """(classes, channels, input side) of the space's dataset, at its resolution."""
    from ..data import load_dataset

    info = _DATASET_SHAPES.get(space.dataset.name)
    if info is None:
        d = load_dataset(space.dataset.name, space.dataset.root)
        info = (d.num_classes, d.in_channels, d.input_size)
    classes, channels, size = info
    return classes, channels, space.dataset.resolution or size


def dataset_model_kwargs(space: Space):
    """Model kwargs a dataset implies (classes, channels, MLP input size), per architecture."""
    from ..models import MODELS

    classes, channels, size = dataset_shape(space)

    def kwargs(arch: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"num_classes": classes, "in_channels": channels}
        if MODELS.get(arch).takes_image_size:
            kw["image_size"] = size
        return kw

    return kwargs


_DATASET_SHAPES = {"fashion-mnist-small": (10, 1, 28), "fashion-mnist": (10, 1, 28), "mnist": (10, 1, 28), "cifar10": (10, 3, 32),
                   "cifar100": (100, 3, 32), "imagenet": (1000, 3, 224)}
