"""Optimizer step time: l2optim against torch.optim, the memory floor and peers.

Run:  python benchmarks/optimizers/step_time.py [--device cpu|cuda] [--repeats 15] [--layouts large,small]
                                    [--contended] [--without-compiled]
                                    [--tables classes,kernels]

For each mode (SGD with momentum, Adam, RMSprop; coupled and decoupled) it times, in one
process with the candidates interleaved round by round (in a new random order each round),
the median step of:

* l2optim with its default constructor, and with ``fused=True``;
* torch.optim with its default constructor for the same maths, and with each implementation
  it has for the same maths (single-tensor, foreach, fused), the quickest of which is
  "torch fastest" (torch has no decoupled SGD-momentum or RMSprop: there each is what a
  user would write, ``torch._foreach_mul_(params, 1 - lr*wd)`` before the step);
* the memory floor: torch's fused SGD with momentum over the same parameters (it reads and
  writes each parameter and one buffer: 20 bytes per float32 parameter);
* pytorch_optimizer's SGDW and AdamW, when installed (the ``bench`` extra).

It prints ratios: A = l2optim default / torch default (mean step time; "p90" compares the
slowest tenth of steps), B = l2optim default / torch fastest, C = l2optim fused / floor
(modes torch has no fused kernel for), "fused/default" = torch's fused kernel / torch's
default (on CPU, what l2optim's default ran before it chose per tensor size), and the bytes
of optimizer state per parameter. ``--contended`` runs a second process doing
multi-threaded matrix products on every core while timing, as on a shared machine. On
CUDA it also prints the fraction of the device's copy bandwidth that l2optim's default
step reaches. Times mean little on a shared machine; ratios measured
side by side do.

Where the Triton kernels (``l2optim.optimizers._triton``) accept the tensors (CUDA; or CPU with
``TRITON_INTERPRET=1``, a dry run of the code path, not a timing), each row also times the
kernel step for the same maths: T = kernel / torch's fused kernel where torch has one, else
kernel / floor, and "T BW", the kernel's share of the copy bandwidth. The second table
("kernels") times the kernel in every mode its constexprs distinguish, against torch's
fused and foreach steps for the same maths, with the seconds of its first two steps
(compilation included, on an empty Triton cache) and a check that later steps compiled
nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import l2optim

LR, WD, MOMENTUM = 1e-3, 1e-2, 0.9

LAYOUTS: dict[str, list[tuple[int, ...]]] = {
    # A 697-parameter MLP (8 → 32 → 12 → 1): where per-step overhead is everything; also
    # a dry run of every code path (e.g. interpreted kernels on a CPU).
    "tiny": [(32, 8), (32,), (12, 32), (12,), (1, 12), (1,)],
    "small": [(1_000,)] * 1_000,  # 1M parameters in 1,000 small tensors
    "large": [(80_000,)] * 100,  # 8M parameters in 100 tensors
    # 100M parameters: big enough that a GPU step is not bound by launch overhead.
    "huge": [(1_000_000,)] * 100,
}
#: Rounds per ``--repeats`` for layouts whose steps take microseconds.
ROUNDS_PER_REPEAT = {"tiny": 100}

# (l2optim class, torch class, kwargs, state bytes per float32 parameter incl. p and g)
MODES: dict[str, tuple[type, type, dict]] = {
    "sgd-momentum": (l2optim.SGD, torch.optim.SGD, {"lr": LR, "momentum": MOMENTUM}),
    "adam": (l2optim.Adam, torch.optim.Adam, {"lr": LR}),
    "rmsprop": (l2optim.RMSprop, torch.optim.RMSprop, {"lr": LR}),
}
BYTES_PER_PARAM = {"sgd-momentum": 20, "adam": 28, "rmsprop": 20}


def make_params(shapes: list[tuple[int, ...]], device: str) -> list[torch.Tensor]:
    generator = torch.Generator(device="cpu").manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=generator).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(device) * 1e-3
        params.append(p)
    return params


#: The load of ``--contended``: matrix products on every core, until killed.
CONTENTION = """
import torch
torch.set_num_threads({threads})
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def start_contention() -> subprocess.Popen:
    threads = os.cpu_count() or 1
    return subprocess.Popen([sys.executable, "-c", CONTENTION.format(threads=threads)])


@dataclass
class Candidate:
    """One way to take a step: an optimizer, and what the user runs before it."""

    optimizer: torch.optim.Optimizer
    before: Callable[[], None] | None = None

    def __call__(self) -> None:
        if self.before is not None:
            self.before()
        self.optimizer.step()

    def state_bytes_per_param(self) -> float:
        """Optimizer state kept per parameter (scalars such as step counts left out)."""
        state = self.optimizer.state.values()
        total = sum(
            t.numel() * t.element_size()
            for s in state
            for t in s.values()
            if isinstance(t, torch.Tensor) and t.numel() > 1
        )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return total / sum(p.numel() for p in params)


def manual_decoupled(params: list[torch.Tensor]) -> Callable[[], None]:
    """What a torch.optim user writes for decoupled decay the class does not offer."""

    @torch.no_grad()
    def shrink() -> None:
        torch._foreach_mul_(params, 1 - LR * WD)

    return shrink


def candidates(mode: str, decoupled: bool, params: list[torch.Tensor]) -> dict[str, Candidate]:
    ours, theirs, kwargs = MODES[mode]
    out: dict[str, Candidate] = {}
    out["l2optim default"] = Candidate(
        ours(params, weight_decay=WD, decoupled_weight_decay=decoupled, **kwargs)
    )
    if mode != "adam":
        out["l2optim fused"] = Candidate(
            ours(params, weight_decay=WD, decoupled_weight_decay=decoupled, fused=True, **kwargs)
        )
    torch_has_math = not decoupled or mode == "adam"
    wd = {"weight_decay": WD if torch_has_math else 0.0}
    flag = {"decoupled_weight_decay": True} if decoupled and mode == "adam" else {}
    before = None if torch_has_math else manual_decoupled(params)
    out["torch default"] = Candidate(theirs(params, **kwargs, **wd, **flag), before)
    # Every implementation torch has for the maths; "torch fastest" is the quickest of them
    # (on CPU torch's default is the per-tensor loop, which can beat its foreach path).
    implementations = [{"foreach": True}, {"foreach": False}]
    if mode != "rmsprop":
        implementations.append({"fused": True})
    for impl in implementations:
        name = "torch " + ",".join(f"{k}={v}" for k, v in impl.items())
        out[name] = Candidate(theirs(params, **kwargs, **wd, **flag, **impl), before)
    out["floor"] = Candidate(torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, fused=True))
    try:
        import pytorch_optimizer as po
    except ImportError:
        return out
    if mode == "sgd-momentum" and decoupled:
        out["pytorch_optimizer SGDW"] = Candidate(
            po.SGDW(params, lr=LR, momentum=MOMENTUM, weight_decay=WD, weight_decouple=True)
        )
    if mode == "adam" and decoupled:
        out["pytorch_optimizer AdamW"] = Candidate(po.AdamW(params, lr=LR, weight_decay=WD))
    return out


# -- the Triton kernels ------------------------------------------------------------------


def kernels_usable(params: list[torch.Tensor]) -> bool:
    try:
        from l2optim.optimizers import _triton
    except ImportError:
        return False
    return _triton.supports(params)


@dataclass
class KernelStep:
    """One step of ``l2optim.optimizers._triton``'s kernel for a family, on state in torch's layout.

    ``hyper``: the step function's keyword arguments (``lr`` included); ``decoupled_wd``:
    λ of decoupled decay with the default scaling (decay_factor = 1 − lr·λ), or 0.
    """

    family: str
    params: list[torch.Tensor]
    hyper: dict
    decoupled_wd: float = 0.0
    states: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        from l2optim.optimizers import _triton

        self.states = [{} for _ in self.params]
        for p, state in zip(self.params, self.states, strict=True):
            if self.family == "adam":
                _triton.init_adam_state(p, state, amsgrad=self.hyper["amsgrad"])
            elif self.family == "rmsprop":
                _triton.init_rmsprop_state(
                    p, state, momentum=self.hyper["momentum"], centered=self.hyper["centered"]
                )

    def _lists(self, *keys: str) -> list[list[torch.Tensor]]:
        return [[s[k] for s in self.states] if k in self.states[0] else [] for k in keys]

    @torch.no_grad()
    def __call__(self) -> None:
        from l2optim.optimizers import _triton

        grads = [p.grad for p in self.params]
        factor = 1 - self.hyper["lr"] * self.decoupled_wd if self.decoupled_wd else None
        if self.family == "sgd":
            buffers = [s.get("momentum_buffer") for s in self.states]
            _triton.sgd_step(self.params, grads, buffers, decay_factor=factor, **self.hyper)
            for state, buffer in zip(self.states, buffers, strict=True):
                if buffer is not None:
                    state["momentum_buffer"] = buffer
        elif self.family == "adam":
            lists = self._lists("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")
            _triton.adam_step(self.params, grads, *lists, decay_factor=factor, **self.hyper)
        else:
            lists = self._lists("square_avg", "grad_avg", "momentum_buffer", "step")
            _triton.rmsprop_step(self.params, grads, *lists, decay_factor=factor, **self.hyper)

    def bytes_per_param(self) -> int:
        """Bytes one step moves per parameter: p read and written, g read, each state
        tensor read and written (counted in the parameters' dtype)."""
        size = self.params[0].element_size()
        return (3 + 2 * sum(t.numel() > 1 for t in self.states[0].values())) * size


def kernel_for(mode: str, decoupled: bool, params: list[torch.Tensor]) -> KernelStep:
    """The kernel step for the maths of a row of the classes table."""
    wd = {"weight_decay": 0.0 if decoupled else WD}
    decoupled_wd = WD if decoupled else 0.0
    if mode == "sgd-momentum":
        hyper = {"lr": LR, "momentum": MOMENTUM, **wd}
        return KernelStep("sgd", params, hyper, decoupled_wd)
    if mode == "adam":
        hyper = {"lr": LR, "amsgrad": False, "beta1": 0.9, "beta2": 0.999, **wd}
        return KernelStep("adam", params, hyper, decoupled_wd)
    hyper = {"lr": LR, "momentum": 0.0, "centered": False, **wd}
    return KernelStep("rmsprop", params, hyper, decoupled_wd)


# Every mode the kernels compile apart, with torch's class and arguments for the same maths.
# (name, family, kernel arguments, decoupled λ, torch class, its arguments, torch has fused)
_SGD, _ADAM = torch.optim.SGD, torch.optim.Adam
_BETAS = {"beta1": 0.9, "beta2": 0.999}
KERNEL_MODES: list[tuple[str, str, dict, float, type, dict, bool]] = [
    ("sgd", "sgd", {"weight_decay": WD}, 0.0, _SGD, {"weight_decay": WD}, True),
    ("sgd-momentum", "sgd", {"momentum": MOMENTUM, "weight_decay": WD}, 0.0, _SGD,
     {"momentum": MOMENTUM, "weight_decay": WD}, True),
    ("sgd-nesterov", "sgd", {"momentum": MOMENTUM, "nesterov": True}, 0.0, _SGD,
     {"momentum": MOMENTUM, "nesterov": True}, True),
    ("sgd-dampening-maximize", "sgd", {"momentum": MOMENTUM, "dampening": 0.1, "maximize": True},
     0.0, _SGD, {"momentum": MOMENTUM, "dampening": 0.1, "maximize": True}, True),
    ("sgdw-momentum", "sgd", {"momentum": MOMENTUM}, WD, _SGD, {"momentum": MOMENTUM}, False),
    ("adam", "adam", {"amsgrad": False, **_BETAS, "weight_decay": WD}, 0.0, _ADAM,
     {"weight_decay": WD}, True),
    ("adam-amsgrad", "adam", {"amsgrad": True, **_BETAS}, 0.0, _ADAM, {"amsgrad": True}, True),
    ("adamw", "adam", {"amsgrad": False, **_BETAS}, WD, torch.optim.AdamW, {"weight_decay": WD},
     True),
    ("adamw-amsgrad-maximize", "adam", {"amsgrad": True, "maximize": True, **_BETAS}, WD,
     torch.optim.AdamW, {"weight_decay": WD, "amsgrad": True, "maximize": True}, True),
    ("rmsprop", "rmsprop", {"momentum": 0.0, "centered": False, "weight_decay": WD}, 0.0,
     torch.optim.RMSprop, {"weight_decay": WD}, False),
    ("rmsprop-centered", "rmsprop", {"momentum": 0.0, "centered": True}, 0.0,
     torch.optim.RMSprop, {"centered": True}, False),
    ("rmsprop-momentum", "rmsprop", {"momentum": MOMENTUM, "centered": False}, 0.0,
     torch.optim.RMSprop, {"momentum": MOMENTUM}, False),
    ("rmsprop-centered-momentum", "rmsprop", {"momentum": MOMENTUM, "centered": True}, 0.0,
     torch.optim.RMSprop, {"momentum": MOMENTUM, "centered": True}, False),
    ("rmspropw", "rmsprop", {"momentum": 0.0, "centered": False, "maximize": True}, WD,
     torch.optim.RMSprop, {"maximize": True}, False),
]  # fmt: skip


def kernel_table(
    layouts: list[str], repeats: int, device: str, bandwidth: float | None, modes: list[str]
) -> None:
    """Every kernel mode against torch's fused (if any) and foreach steps and the floor."""
    from l2optim.optimizers._triton import _tables

    print(f"\nkernel launch: BLOCK={_tables.BLOCK} CHUNK={_tables.CHUNK} warps={_tables.NUM_WARPS}")
    print(
        f"\n{'layout':6} {'kernel mode':26} {'kernel ms':>9} {'/torch fused':>12} "
        f"{'/foreach':>8} {'/floor':>7} {'B/param':>7}{'  BW' if bandwidth else ''}"
        "  first 2 steps  compiled later"
    )
    for layout in layouts:
        for name, family, args, decoupled_wd, cls, torch_args, has_fused in KERNEL_MODES:
            if modes != ["all"] and name not in modes:
                continue
            params = make_params(LAYOUTS[layout], device)
            numel = sum(p.numel() for p in params)
            if not kernels_usable(params):
                print(f"{layout:6} {name:26} (the kernels do not accept these tensors)")
                return
            kernel = KernelStep(family, params, {"lr": LR, **args}, decoupled_wd)
            before = manual_decoupled(params) if decoupled_wd else None
            steps: dict[str, Callable[[], None]] = {
                "kernel": kernel,
                "foreach": Candidate(cls(params, lr=LR, foreach=True, **torch_args), before),
                "floor": Candidate(torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, fused=True)),
            }
            if has_fused:
                steps["fused"] = Candidate(cls(params, lr=LR, fused=True, **torch_args), before)
            name_of = f"{family}_kernel"
            samples, warmup = time_interleaved(steps, repeats, device)
            t = {name: statistics.median(s) for name, s in samples.items()}
            compiled_after_warmup = _tables.compiled_variants(name_of)
            # more steps than the timing took: any recompilation shows here
            for _ in range(3):
                kernel()
            recompiled = (
                "-"
                if compiled_after_warmup is None
                else str(_tables.compiled_variants(name_of) - compiled_after_warmup)
            )
            moved = kernel.bytes_per_param()
            fused = f"{t['kernel'] / t['fused']:.2f}" if "fused" in t else "-"
            floor = t["floor"] * moved / 20  # torch's fused SGD-momentum moves 20 B/param
            line = (
                f"{layout:6} {name:26} {t['kernel'] * 1e3:9.2f} {fused:>12} "
                f"{t['kernel'] / t['foreach']:8.2f} {t['kernel'] / floor:7.2f} {moved:7d}"
            )
            if bandwidth:
                line += f"  {moved * numel / t['kernel'] / bandwidth:.0%}"
            print(f"{line}  {warmup['kernel']:11.2f}s  {recompiled:>14}", flush=True)
            del params, steps, kernel
            if device == "cuda":
                torch.cuda.empty_cache()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    steps: dict[str, Callable], repeats: int, device: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of every step of each candidate, the candidates taking turns each round.

    Also returns the seconds of each candidate's first two steps (lazy state, compilation).
    """
    warmup = {}
    for name, step in steps.items():
        sync(device)
        start = time.perf_counter()
        step()
        step()
        sync(device)
        warmup[name] = time.perf_counter() - start
    samples: dict[str, list[float]] = {name: [] for name in steps}
    # A new order every round: in a fixed one, the candidate after a CPU fused kernel's
    # step (whose worker threads spin on after it) was always the same, l2optim's default,
    # and on a busy machine it ran slower for that alone.
    order = random.Random(0)
    for _ in range(repeats):
        for name in order.sample(list(steps), len(steps)):
            step = steps[name]
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return samples, warmup


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    src = torch.empty(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * nbytes / statistics.median(times)


def peak_step_bytes_per_param(step: Candidate, params: list[torch.Tensor]) -> float:
    """CUDA memory a step allocates beyond what was allocated before it, per parameter."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / sum(p.numel() for p in params)


CONTENTION_HELP = "time while another process runs matrix products on every core"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--layouts", default="large,small")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--contended", action="store_true", help=CONTENTION_HELP)
    parser.add_argument(
        "--without-compiled",
        action="store_true",
        help="leave out fused=True where it compiles (its first steps take minutes for "
        "1,000 tensors on a CPU); no C column then",
    )
    parser.add_argument(
        "--tables",
        default="classes,kernels",
        help="classes (l2optim's optimizers against torch's), kernels (every Triton kernel mode)",
    )
    parser.add_argument(
        "--kernel-modes", default="all", help="kernel modes to time (names as printed), or all"
    )
    parser.add_argument(
        "--kernel-config",
        default="",
        help="BLOCK,CHUNK,WARPS for the kernel launches (a tuning run); default: the library's",
    )
    args = parser.parse_args()
    tables = args.tables.split(",")
    if args.kernel_config:
        from l2optim.optimizers._triton import _tables

        block, chunk, warps = map(int, args.kernel_config.split(","))
        _tables.BLOCK, _tables.CHUNK, _tables.NUM_WARPS = block, chunk, warps
    device = args.device
    if device == "cpu":
        print(f"cpu: {torch.get_num_threads()} threads")
    else:
        print(f"{torch.cuda.get_device_name()}")
    bandwidth = copy_bandwidth(device) if device == "cuda" else None
    if bandwidth:
        print(f"copy bandwidth: {bandwidth / 1e9:.0f} GB/s")
    load = start_contention() if args.contended else None
    try:
        if "classes" in tables:
            classes_table(
                args.layouts.split(","),
                args.modes.split(","),
                args.repeats,
                device,
                bandwidth,
                compiled=not args.without_compiled,
            )
        if "kernels" in tables:
            kernel_table(
                args.layouts.split(","),
                args.repeats,
                device,
                bandwidth,
                args.kernel_modes.split(","),
            )
    finally:
        if load is not None:
            load.kill()


def classes_table(
    layouts: list[str],
    modes: list[str],
    repeats: int,
    device: str,
    bandwidth: float | None,
    compiled: bool = True,
) -> None:
    header = (
        f"{'layout':6} {'mode':13} {'form':9} {'A ours/torch':>12} {'p90':>5} "
        f"{'B ours/fastest':>14} {'C fused/floor':>13} {'fused/default':>13} "
        f"{'state B/param':>13} {'ours ms':>8}"
    )
    print(
        header
        + ("  BW" if bandwidth else "")
        + f"  {'T kernel ms':>11} {'T/fused|floor':>13}"
        + ("  T BW" if bandwidth else "")
        + "  peers/ours"
    )
    for layout in layouts:
        for mode in modes:
            for decoupled in (False, True):
                row = classes_row(layout, mode, decoupled, repeats, device, bandwidth, compiled)
                print(row, flush=True)


def classes_row(
    layout: str,
    mode: str,
    decoupled: bool,
    repeats: int,
    device: str,
    bandwidth: float | None,
    compiled: bool = True,
) -> str:
    """One line of the classes table: every candidate for one layout, mode and form."""
    params = make_params(LAYOUTS[layout], device)
    numel = sum(p.numel() for p in params)
    steps: dict[str, Callable[[], None]] = dict(candidates(mode, decoupled, params))
    torch_has_fused = mode != "rmsprop" and not (mode == "sgd-momentum" and decoupled)
    if not compiled and not torch_has_fused:
        del steps["l2optim fused"]
    if kernels_usable(params):
        steps["kernel"] = kernel_for(mode, decoupled, params)
    samples, warmup = time_interleaved(steps, repeats * ROUNDS_PER_REPEAT.get(layout, 1), device)
    mean = {name: statistics.mean(s) for name, s in samples.items()}
    t = {name: statistics.median(s) for name, s in samples.items()}
    ours = t["l2optim default"]
    torch_fastest = min(v for k, v in t.items() if k.startswith("torch "))
    c = "" if "l2optim fused" not in t or torch_has_fused else f"{t['l2optim fused'] / t['floor']:.2f}"
    fused_vs_default = (
        f"{mean['torch fused=True'] / mean['torch default']:.2f}" if mode != "rmsprop" else ""
    )
    tails = p90(samples["l2optim default"]) / p90(samples["torch default"])
    line = (
        f"{layout:6} {mode:13} {'decoupled' if decoupled else 'coupled':9} "
        f"{mean['l2optim default'] / mean['torch default']:12.2f} {tails:5.2f} "
        f"{ours / torch_fastest:14.2f} {c:>13} {fused_vs_default:>13} "
        f"{steps['l2optim default'].state_bytes_per_param():13.1f} {ours * 1e3:8.3f}"
    )
    if bandwidth:
        moved = BYTES_PER_PARAM[mode] * numel
        best = min(ours, t.get("l2optim fused", ours))
        line += f"  {moved / best / bandwidth:.0%}"
        line += f"  peak+{peak_step_bytes_per_param(steps['l2optim default'], params):.1f}B/param"
    if "kernel" in t:
        # against torch's fused kernel for the maths, else against the floor
        reference = t["torch fused=True"] if torch_has_fused else t["floor"]
        line += f"  {t['kernel'] * 1e3:11.2f} {t['kernel'] / reference:13.2f}"
        if bandwidth:
            line += f"  {BYTES_PER_PARAM[mode] * numel / t['kernel'] / bandwidth:4.0%}"
    else:
        line += f"  {'-':>11} {'-':>13}" + ("  -" if bandwidth else "")
    peers = [f"{k.split()[1]} {v / ours:.2f}" for k, v in t.items() if "pytorch_optimizer" in k]
    if c:
        peers.append(f"first steps of fused {warmup['l2optim fused']:.1f}s")
    del params, steps
    if device == "cuda":
        torch.cuda.empty_cache()
    return line + ("  " + ", ".join(peers) if peers else "")


if __name__ == "__main__":
    main()
