"""One device layer: what the trainer, measurement and checkpoints need of a device.

A device request is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``xla``.
:func:`resolve_device` turns it into a ``torch.device`` or raises a ValueError that
names the flag or key it came from; a request for CUDA on a machine without it is an
error, never a silent fall-back to the CPU. ``auto`` is CUDA when a GPU is visible,
else the CPU (XLA is used only when asked for).

:func:`backend` gives, per device type, the few operations that differ between devices:

- ``synchronize()``: wait for queued work (CUDA kernels, XLA's lazy graph);
- ``step()``: a step boundary: nothing on eager devices; on XLA the lazy graph recorded
  since the last boundary is cut and queued to run (``torch_xla.sync()``) without the host
  waiting, so every training step (and every evaluation batch) is the same graph and
  compiles once;
- ``rng_state()`` / ``set_rng_state()``: the global RNG states a checkpoint must keep,
  always as CPU uint8 tensors (``torch.set_rng_state`` refuses anything else);
- ``autocast_dtype(amp)``: bf16 only where the device runs it natively; float16 is never
  chosen (it needs a GradScaler, which buys nothing over bf16 on devices that have it);
- ``determinism(on)``: cuDNN's deterministic/benchmark switches and
  ``torch.use_deterministic_algorithms`` (warn_only: an op without a deterministic kernel
  warns rather than stopping a trial), restored on exit (``CUBLAS_WORKSPACE_CONFIG``,
  which cuBLAS reads once, is set when this module is imported, unless already set);
- ``time_steps(fn, warmup, repeats)``: seconds per call (CUDA events, so timing adds no
  host sync between steps; elsewhere sync + perf_counter);
- ``reset_peak_memory()`` / ``peak_memory()``: bytes the allocator handed out at most;
- ``set_memory_fraction(f)``: a cap on this process's share of the GPU, for trials that
  share one (see :func:`share_gpu`).

>>> resolve_device("cpu")
device(type='cpu')
>>> backend(torch.device("cpu")).autocast_dtype("auto") is None
True
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch
from torch import nn

Amp = Literal["auto", "bf16", "off"]
CHOICES = "auto, cpu, cuda, cuda:N or xla"
# Deterministic cuBLAS needs this before the process's first cuBLAS call, which can come before
# train() (a throughput measurement); set here, at import, unless the user chose a value.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
CONTEXT_BYTES = 1 << 30
"""GPU memory one process needs outside PyTorch's allocator (CUDA context, cuDNN/cuBLAS handles): kept out of its
memory fraction."""


def _cuda_facts() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"torch {torch.__version__} built with {'CUDA ' + torch.version.cuda if torch.version.cuda else 'no CUDA'}, "
            f"{torch.cuda.device_count()} GPUs visible" + (f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""))


def _cuda_unavailable(request: str, flag: str) -> str:
    return f"{flag}={request!r} asks for a GPU, but CUDA is not available here ({_cuda_facts()}); use {flag}=cpu or auto"


def _cuda() -> torch.device:
    # "cuda" with its index: a dataset's device copy and the model then name the same device
    return torch.device("cuda", torch.cuda.current_device())


def resolve_device(request: str | torch.device | None = "auto", *, flag: str = "device") -> torch.device:
    """The ``torch.device`` for ``request`` (auto, cpu, cuda, cuda:N, xla); ValueError naming ``flag`` when it is unavailable.

    >>> resolve_device("tpu", flag="--device")
    Traceback (most recent call last):
    ...
    ValueError: --device='tpu' is not a device; allowed: auto, cpu, cuda, cuda:N or xla
    """
    text = "auto" if request is None else str(request).strip().lower()
    if text == "auto":
        return _cuda() if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            raise ValueError(_cuda_unavailable(text, flag))
        if m.group(1) is None:
            return _cuda()
        index = int(m.group(1))
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"{flag}={text!r}: only {torch.cuda.device_count()} GPUs are visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    if text in ("xla", "xla:0"):
        try:
            import torch_xla  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError(f"{flag}={text!r} needs PyTorch/XLA (pip install torch_xla), which is not installed") from None
        return torch.device(torch_xla.device())
    raise ValueError(f"{flag}={text!r} is not a device; allowed: {CHOICES}")


def model_device(model: nn.Module) -> torch.device:
    """The one device ``model``'s parameters and buffers live on (the CPU for a model with none)."""
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    if len(devices) > 1:
        raise ValueError(f"the model's tensors are on several devices ({', '.join(sorted(map(str, devices)))}); move it to one, "
                         "or pass device=")
    return devices.pop() if devices else torch.device("cpu")


def trial_device(gpus_per_trial: float, tpus_per_trial: int = 0, *, key: str = "resources") -> torch.device:
    """The device a trial runs on: an XLA device when the space gives it TPUs, CUDA when it gives it GPUs, else the CPU.

    Never a silent fall-back to the CPU: GPUs asked for but not visible are an error, and so
    are TPUs where torch_xla is missing or its device is not a TPU (unless ``PJRT_DEVICE``
    names the XLA backend outright: ``PJRT_DEVICE=CPU`` is how the tests run XLA without a
    TPU). Ray hands each GPU trial its GPU through ``CUDA_VISIBLE_DEVICES``, so the device
    is ``cuda`` (index 0 of what the worker sees), and each TPU trial its chips through
    ``TPU_VISIBLE_CHIPS``, which the TPU runtime reads when torch_xla first starts.
    """
    if tpus_per_trial > 0:
        return _tpu_device(tpus_per_trial, f"{key}.tpus_per_trial")
    if gpus_per_trial <= 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{key}.gpus_per_trial={gpus_per_trial:g} asks for a GPU, but this worker sees none ({_cuda_facts()}); "
                         f"set {key}.gpus_per_trial: 0 to train on the CPU")
    return _cuda()


def _tpu_device(tpus: int, key: str) -> torch.device:
    chips = os.environ.get("TPU_VISIBLE_CHIPS")
    seen = f"TPU_VISIBLE_CHIPS={chips!r}" if chips is not None else "no TPU_VISIBLE_CHIPS"
    try:
        device = resolve_device("xla", flag=key)
    except ValueError as e:
        raise ValueError(f"{key}={tpus} asks for TPUs, but this worker cannot use them: {e}") from None
    hw = XLABackend(device)._hw()
    pjrt = os.environ.get("PJRT_DEVICE")
    if hw != "TPU" and (pjrt or "").upper() != hw.upper():  # torch_xla chose a non-TPU backend by itself
        raise ValueError(f"{key}={tpus} asks for TPUs, but this worker's XLA device is {hw} ({seen}, PJRT_DEVICE={pjrt!r}); "
                         "run it on a TPU host, or set PJRT_DEVICE to the backend you mean (PJRT_DEVICE=CPU tests without a TPU)")
    return device


def memory_fraction_for(gpus_per_trial: float, total_bytes: int, context_bytes: int = CONTEXT_BYTES) -> float | None:
    """This process's cap on the GPU's memory when ``gpus_per_trial`` < 1 (None: a whole GPU, no cap).

    Each process also holds a CUDA context outside PyTorch's allocator, so the cap is the
    trial's share less ``context_bytes``: k trials at 1/k of a GPU then fit together.

    >>> memory_fraction_for(0.25, 80 * 2**30)
    0.2375
    """
    if gpus_per_trial >= 1:
        return None
    return max(0.01, gpus_per_trial - context_bytes / total_bytes)


class Backend:
    """The operations smhsearch needs of one device, as the CPU does them; device types override."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def name(self) -> str:
        """The CPU model and thread count (a speed figure names what it was measured on)."""
        model = platform.processor() or "cpu"
        try:
            found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
            model = found.group(1).strip() if found else model
        except OSError:
            pass
        return f"{model} ({torch.get_num_threads()} threads)"

    def synchronize(self) -> None:
        pass

    def step(self) -> None:
        """The end of one step's work (see the module's docstring): nothing on an eager device."""

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"cpu": torch.get_rng_state()}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`rng_state` returned (a state saved on another device type restores its CPU part)."""
        torch.set_rng_state(state["cpu"].cpu())

    def bf16_supported(self) -> bool:
        return True  # CPU autocast runs bf16 (slowly without AVX-512 BF16, so "auto" does not choose it)

    def autocast_dtype(self, amp: Amp) -> torch.dtype | None:
        """The autocast dtype for ``amp``: None for off; "auto" is bf16 where the device runs it natively."""
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be one of 'auto', 'bf16', 'off', but got {amp!r}")
        if amp == "bf16" and not self.bf16_supported():
            raise ValueError(f"amp='bf16', but {self.device} ({self.name()}) does not run bfloat16; use amp: off")
        return torch.bfloat16 if amp == "bf16" or (amp == "auto" and self._auto_bf16()) else None

    def _auto_bf16(self) -> bool:
        return False

    def inference(self) -> contextlib.AbstractContextManager:
        """No autograd, for timing and serving a forward: ``torch.inference_mode`` where the device takes it."""
        return torch.inference_mode()

    def autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    @contextlib.contextmanager
    def determinism(self, on: bool) -> Iterator[None]:
        """Deterministic kernels (``on``) or the fastest (cuDNN autotuning); the previous switches come back on exit."""
        cudnn = torch.backends.cudnn
        before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
        cudnn.deterministic, cudnn.benchmark = on, (not on) and self.device.type == "cuda"
        torch.use_deterministic_algorithms(on, warn_only=True)
        try:
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = before[0], before[1]
            torch.use_deterministic_algorithms(before[2], warn_only=before[3])

    def time_steps(self, fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
        """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
        for _ in range(warmup):
            fn()
        self.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            self.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    def median_seconds(self, fn: Callable[[], object], warmup: int, repeats: int) -> float:
        """The median of :meth:`time_steps` (the upper one of an even count)."""
        times = self.time_steps(fn, warmup, repeats)
        return sorted(times)[len(times) // 2]

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory(self) -> int | None:
        """Peak bytes allocated since the last reset; None where the device does not count them (the CPU)."""
        return None

    def set_memory_fraction(self, fraction: float) -> bool:
        """Cap this process's share of the device's memory; False where the device has no such cap."""
        return False

    @property
    def pin_memory(self) -> bool:
        """Whether host batches should be pinned for an asynchronous copy to this device."""
        return False


class CUDABackend(Backend):
    def name(self) -> str:
        return torch.cuda.get_device_name(self.device)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {**super().rng_state(), "cuda": torch.cuda.get_rng_state(self.device)}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        super().set_rng_state(state)
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"].cpu(), self.device)

    def bf16_supported(self) -> bool:
        # native bf16 only (Ampere and later): emulated bf16 is slower than float32
        return torch.cuda.is_bf16_supported(including_emulation=False)

    def _auto_bf16(self) -> bool:
        return self.bf16_supported()

    def time_steps(self, fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
        # events recorded in stream order: steps queue back to back, one sync at the end
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize(self.device)
        with torch.cuda.device(self.device):
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
            for start, end in events:
                start.record()
                fn()
                end.record()
        torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) / 1000.0 for start, end in events]

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int | None:
        return int(torch.cuda.max_memory_allocated(self.device))

    def set_memory_fraction(self, fraction: float) -> bool:
        torch.cuda.set_per_process_memory_fraction(fraction, self.device)
        return True

    @property
    def pin_memory(self) -> bool:
        return True


class XLABackend(Backend):
    """PyTorch/XLA (TPUs; XLA's CPU backend with ``PJRT_DEVICE=CPU``): lazy tensors, so a step boundary cuts the graph.

    Tested on XLA's CPU backend only (``make test-xla``); the TPU-specific parts (bf16 by
    default, memory counts) follow torch_xla's documented API.
    """

    def _hw(self) -> str:
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        return str(xm.xla_device_hw(self.device))  # "TPU", "CPU", ...

    def name(self) -> str:
        hw = self._hw()
        if hw == "TPU":
            try:
                import torch_xla  # type: ignore[import-not-found]

                hw = f"TPU v{torch_xla.tpu.version()}"
            except Exception:  # the version is only a label
                pass
        return f"XLA {hw} ({self.device})"

    def step(self) -> None:
        import torch_xla  # type: ignore[import-not-found]

        torch_xla.sync()

    def synchronize(self) -> None:
        import torch_xla  # type: ignore[import-not-found]
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        torch_xla.sync()
        xm.wait_device_ops()

    def rng_state(self) -> dict[str, torch.Tensor]:
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        seed = int(xm.get_rng_state(self.device))  # an unsigned 64-bit state: kept as its 8 bytes (int64 would overflow)
        return {**super().rng_state(), "xla": torch.tensor(list(seed.to_bytes(8, "little")), dtype=torch.uint8)}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        super().set_rng_state(state)
        if "xla" in state:
            xm.set_rng_state(int.from_bytes(bytes(state["xla"].cpu().tolist()), "little"), self.device)

    def inference(self) -> contextlib.AbstractContextManager:
        return torch.no_grad()  # XLA's views refuse inference tensors ("Cannot set version_counter for inference tensor")

    def _auto_bf16(self) -> bool:
        return self._hw() == "TPU"  # TPUs run bf16 natively; XLA's CPU backend emulates it

    def peak_memory(self) -> int | None:
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        try:
            info = xm.get_memory_info(self.device)
        except RuntimeError:  # XLA's CPU backend keeps no allocator statistics
            return None
        peak = info.get("peak_bytes_used", info.get("bytes_used"))
        return None if peak is None else int(peak)


BACKENDS: dict[str, type[Backend]] = {"cpu": Backend, "cuda": CUDABackend, "xla": XLABackend}


def backend(device: torch.device | str) -> Backend:
    """The :class:`Backend` of ``device`` (a ``torch.device`` as :func:`resolve_device` returns)."""
    device = torch.device(device)
    if device.type not in BACKENDS:
        raise ValueError(f"device type {device.type!r} is not supported; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[device.type](device)


def device_name(device: torch.device | str) -> str:
    """A human name of ``device``: the GPU's name, or the CPU model and thread count."""
    return backend(device).name()


def share_gpu(device: torch.device, gpus_per_trial: float) -> float | None:
    """Cap this process's GPU memory at its share (``gpus_per_trial`` < 1) so trials sharing a GPU fit; the fraction set, or None.

    Call once per trial process, before the model goes to the GPU.
    """
    if device.type != "cuda":
        return None
    fraction = memory_fraction_for(gpus_per_trial, torch.cuda.get_device_properties(device).total_memory)
    if fraction is not None:
        backend(device).set_memory_fraction(fraction)
    return fraction
