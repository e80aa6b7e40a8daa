"""Where torch's foreach update stops beating its per-tensor loop on a CPU.

Run:  python benchmarks/optimizers/foreach_crossover.py [--threads 2] [--repeats 15]

For tensors of one size (from 256 to 65,536 elements; as many tensors as make about 2M
parameters, between 8 and 200), it times torch.optim's SGD with momentum, Adam and RMSprop
with ``foreach=True`` against ``foreach=False`` (the loop, torch's CPU default), steps
interleaved, and prints the ratio of the median step times: below 1, foreach is faster.
l2optim's default constructor takes the foreach update for CPU tensors up to
``l2optim.optimizers._implementation.CPU_FOREACH_MAX_NUMEL`` elements.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SIZES = [256, 2048, 8192, 16384, 32768, 65536]
UPDATES = [
    ("SGD", torch.optim.SGD, {"momentum": 0.9}),
    ("Adam", torch.optim.Adam, {}),
    ("RMSprop", torch.optim.RMSprop, {}),
]


def make_params(numel: int, count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(numel, generator=generator).requires_grad_() for _ in range(count)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)
    return params


def foreach_over_loop(cls: type, kwargs: dict, numel: int, count: int, repeats: int) -> float:
    optimizers = {
        foreach: cls(make_params(numel, count), lr=1e-3, weight_decay=1e-2, foreach=foreach,
                     **kwargs)
        for foreach in (False, True)
    }
    for optimizer in optimizers.values():
        optimizer.step()
    samples: dict[bool, list[float]] = {foreach: [] for foreach in optimizers}
    for _ in range(repeats):
        for foreach, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(3):
                optimizer.step()
            samples[foreach].append((time.perf_counter() - start) / 3)
    return statistics.median(samples[True]) / statistics.median(samples[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu: {args.threads} threads; time foreach / loop")
    print(f"{'elements':>8} {'tensors':>7} " + " ".join(f"{name:>8}" for name, _, _ in UPDATES))
    for numel in SIZES:
        count = max(8, min(200, 2_000_000 // numel))
        ratios = [
            foreach_over_loop(cls, kwargs, numel, count, args.repeats) for _, cls, kwargs in UPDATES
        ]
        print(f"{numel:8d} {count:7d} " + " ".join(f"{r:8.2f}" for r in ratios), flush=True)


if __name__ == "__main__":
    main()
