"""Optimizer step time: l2optim against torch.optim, the memory floor and peers.

Run:  python benchmarks/step_time.py [--device cpu|cuda] [--repeats 15] [--layouts large,small]
                                    [--contended]

For each mode (SGD with momentum, Adam, RMSprop; coupled and decoupled) it times, in one
process with the candidates interleaved round by round, the median step of:

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
multi-threaded matrix products on every core while timing, as on a shared machine. On CUDA it also prints the fraction of the device's copy bandwidth
that l2optim's default step reaches. Times mean little on a shared machine; ratios measured
side by side do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import l2optim

LR, WD, MOMENTUM = 1e-3, 1e-2, 0.9

LAYOUTS: dict[str, list[tuple[int, ...]]] = {
    # A 697-parameter MLP (8 → 32 → 12 → 1): where per-step overhead is everything.
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
    for _ in range(repeats):
        for name, step in steps.items():
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
    args = parser.parse_args()
    device = args.device
    if device == "cpu":
        print(f"cpu: {torch.get_num_threads()} threads")
    else:
        print(f"{torch.cuda.get_device_name()}")
    bandwidth = copy_bandwidth(device) if device == "cuda" else None
    if bandwidth:
        print(f"copy bandwidth: {bandwidth / 1e9:.0f} GB/s")
    header = (
        f"{'layout':6} {'mode':13} {'form':9} {'A ours/torch':>12} {'p90':>5} "
        f"{'B ours/fastest':>14} {'C fused/floor':>13} {'fused/default':>13} "
        f"{'state B/param':>13} {'ours ms':>8}"
    )
    print(header + ("  BW" if bandwidth else "") + "  peers/ours")
    load = start_contention() if args.contended else None
    try:
        for layout in args.layouts.split(","):
            for mode in args.modes.split(","):
                for decoupled in (False, True):
                    print(run_case(args, layout, mode, decoupled, device, bandwidth), flush=True)
    finally:
        if load is not None:
            load.kill()


def run_case(args, layout: str, mode: str, decoupled: bool, device: str, bandwidth) -> str:
    """One line of the table: every candidate for one layout, mode and form."""
    params = make_params(LAYOUTS[layout], device)
    steps = candidates(mode, decoupled, params)
    repeats = args.repeats * ROUNDS_PER_REPEAT.get(layout, 1)
    samples, warmup = time_interleaved(steps, repeats, device)
    mean = {name: statistics.mean(s) for name, s in samples.items()}
    t = {name: statistics.median(s) for name, s in samples.items()}
    ours = t["l2optim default"]
    torch_fastest = min(v for k, v in t.items() if k.startswith("torch "))
    torch_has_fused = mode != "rmsprop" and not (mode == "sgd-momentum" and decoupled)
    c = "" if torch_has_fused else f"{t['l2optim fused'] / t['floor']:.2f}"
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
        moved = BYTES_PER_PARAM[mode] * sum(p.numel() for p in params)
        best = min(ours, t.get("l2optim fused", ours))
        line += f"  {moved / best / bandwidth:.0%}"
        line += f"  peak+{peak_step_bytes_per_param(steps['l2optim default'], params):.1f}B/param"
    peers = [f"{k.split()[1]} {v / ours:.2f}" for k, v in t.items() if "pytorch_optimizer" in k]
    if c:
        peers.append(f"first steps of fused {warmup['l2optim fused']:.1f}s")
    del params, steps
    if device == "cuda":
        torch.cuda.empty_cache()
    return line + ("  " + ", ".join(peers) if peers else "")


if __name__ == "__main__":
    main()
