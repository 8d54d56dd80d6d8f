"""Optional dependencies, each behind a pip extra of smhsearch, and the message that names the extra to install.

The core install compresses, trains, searches, reports and picks. ONNX export and timing in ONNX Runtime
(``[onnx]``), a study kept in PostgreSQL (``[postgres]``), training curves in TensorBoard format
(``[tensorboard]``) and timm's architectures (``[timm]``) need more; ``[all]`` installs every extra. Each is
imported only on the path that uses it, through :func:`require`, so a missing one stops that path with a message
naming the extra (the CLI exits 2); a search without tensorboardX runs without curves and says so once.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "postgres": ("psycopg",),
    "tensorboard": ("tensorboardX",),
    "timm": ("timm",),
}
"""Each extra and the modules it installs (pyproject.toml's ``[project.optional-dependencies]`` holds their versions)."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says what needed it and which extra installs it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {module}, which is not installed: pip install 'smhsearch[{extra}]'", name=module)
        self.extra = extra


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted name counts by its top-level package); None for any other."""
    top = module.partition(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def _not_installed(e: ImportError, module: str) -> bool:
    """``e`` says ``module`` (or its top-level package) is absent, not that something it imports is broken."""
    missing = getattr(e, "name", None) or ""
    return isinstance(e, ModuleNotFoundError) and (missing == module or module.startswith(missing + "."))


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported; :class:`MissingExtra` naming ``extra`` when it is not installed.

    ``purpose`` says what needs it, in the user's words (a flag, a format, a key):

    >>> require("json", "onnx", "--format onnx").__name__
    'json'
    >>> require("no_such_module_here", "onnx", "--format onnx")
    Traceback (most recent call last):
    ...
    smhsearch._extras.MissingExtra: --format onnx needs no_such_module_here, which is not installed: pip install 'smhsearch[onnx]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if not _not_installed(e, module):
            raise  # installed but broken: its own error says why
        raise MissingExtra(module, extra, purpose) from None


def require_extra(extra: str, purpose: str) -> None:
    """Every module of ``extra`` installed (see :data:`EXTRAS`), checked before a path starts writing anything.
    Found, not imported: the path imports each where it uses it (ONNX's stack is slow and large to import)."""
    import importlib.util

    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(module, extra, purpose)


def installed(module: str) -> bool:
    """Whether ``module`` imports (for a path that runs without it, saying so once)."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        if not _not_installed(e, module):
            raise
        return False
    return True


def install_hint(e: BaseException) -> str | None:
    """For an import error of a module an extra installs (raised inside a library, as SQLAlchemy's import of
    psycopg): which module is missing and the extra to install; None for any other error."""
    cause = e if isinstance(e, ModuleNotFoundError) else getattr(e, "__cause__", None)
    name = getattr(cause, "name", None) if isinstance(cause, ModuleNotFoundError) else None
    extra = extra_of(name) if name else None
    return f"{name} is not installed: pip install 'smhsearch[{extra}]'" if extra else None
