"""The documentation sources: complete API reference, runnable snippets, an offline site.

Sphinx is not built here (``.ci/run`` builds it with warnings as errors); these tests
read the Markdown sources and run the code they show.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from pydoc import locate

import pytest

import l2optim

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = DOCS.parent / "examples"
PAGES = sorted(DOCS.glob("*.md"))

# ``.. autoclass:: l2optim.SGD`` (in an eval-rst block) or ```{autoclass} l2optim.SGD``.
_AUTODOC = re.compile(
    r"(?:\.\. |\{)auto(?:class|function|module|data|exception)(?:::|\})\s+([\w.]+)"
)
# A fenced block whose info string is exactly ``python``: run by the tests. Blocks that
# cannot run on their own (a cluster, several processes) use ``{code-block} python``.
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def documented_names(markdown: str) -> set[str]:
    """Names given to autodoc directives in a MyST page."""
    return set(_AUTODOC.findall(markdown))


def test_documented_names_reads_both_directive_spellings() -> None:
    page = "```{eval-rst}\n.. autoclass:: l2optim.SGD\n```\n```{autofunction} l2optim.ridge_cv\n```"
    assert documented_names(page) == {"l2optim.SGD", "l2optim.ridge_cv"}


def test_api_reference_covers_all_public_names() -> None:
    documented = documented_names((DOCS / "api.md").read_text())
    missing = [name for name in l2optim.__all__ if f"l2optim.{name}" not in documented]
    # The halves' own names (building blocks), under the package or its half.
    for half in (l2optim.optimizers, l2optim.selection):
        missing += [
            f"{half.__name__}.{name}"
            for name in half.__all__
            if name not in l2optim.__all__ and f"{half.__name__}.{name}" not in documented
        ]
    assert not missing, f"docs/api.md has no autodoc entry for: {missing}"


def test_api_reference_names_exist() -> None:
    # A stale entry would be a Sphinx warning; this says which.
    stale = [n for n in documented_names((DOCS / "api.md").read_text()) if locate(n) is None]
    assert not stale


def test_every_page_is_in_the_table_of_contents() -> None:
    entries = set(_TOCTREE.search((DOCS / "index.md").read_text()).group(1).split())
    pages = {p.stem for p in PAGES if p.stem != "index"}
    assert pages <= entries
    assert "auto_examples/index" in entries


def test_every_example_has_a_place_in_the_gallery_order() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        from gallery_order import ORDER
    finally:
        sys.path.remove(str(DOCS))
    assert {p.name for p in EXAMPLES.glob("*.py")} <= set(ORDER)


def test_maths_is_served_by_the_site_itself() -> None:
    conf = (DOCS / "conf.py").read_text()
    assert re.search(r'^mathjax_path = "mathjax/', conf, re.MULTILINE)
    assert "intersphinx" not in conf  # it downloads inventories at build time


def run_script(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter in ``cwd``, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=cwd,
        env=dict(os.environ, **env),
    )


# Pages whose snippets need the "integrations" extra (and timm, torchvision beside it).
_PAGE_NEEDS = {
    "integrations.md": ("lightning", "transformers", "accelerate", "skorch", "timm", "torchvision")
}


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _PYTHON_BLOCK.search(p.read_text())], ids=lambda p: p.name
)
def test_python_snippets_run(page: Path, tmp_path: Path) -> None:
    """Each page's ``python`` blocks run, in order, as one script in a fresh interpreter."""
    missing = [m for m in _PAGE_NEEDS.get(page.name, ()) if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):  # in CI they are installed, or this fails
        pytest.skip(f"{page.name} needs {missing} (the integrations extra)")
    script = "\n".join(_PYTHON_BLOCK.findall(page.read_text()))
    done = run_script(script, tmp_path, MPLBACKEND="Agg")
    assert done.returncode == 0, f"{page.name}:\n{done.stderr}"


# The migrating page: "With sharded (DTensor) parameters l2optim runs torch's default
# implementation." One gloo process, so a real DTensor without a cluster.
_DTENSOR_DEFAULTS = """
import os, sys, tempfile
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, distribute_tensor
import l2optim
from l2optim.optimizers._mixin import LiveFacts
from l2optim.optimizers._planner import default_implementation


def chosen(optimizer):
    group = optimizer.param_groups[0]
    return default_implementation(group, optimizer._base, LiveFacts(optimizer, group))


store = os.path.join(tempfile.mkdtemp(), "store")
dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
try:
    mesh = init_device_mesh("cpu", (1,))
    # Large enough that a plain tensor would run torch's fused kernel, even on the CPU.
    sharded = torch.nn.Parameter(distribute_tensor(torch.randn(256, 256), mesh, [Replicate()]))
    plain = torch.nn.Parameter(torch.randn(256, 256))
    momentum = {"momentum": 0.9}
    for cls, kwargs in [
        (l2optim.SGD, momentum), (l2optim.SGDW, momentum), (l2optim.Adam, {}), (l2optim.AdamW, {})
    ]:
        assert chosen(cls([plain], lr=0.1, **kwargs)) == {"fused": True}, cls
        optimizer = cls([sharded], lr=0.1, **kwargs)
        assert chosen(optimizer) == {}, cls
        sharded.grad = torch.ones_like(sharded)
        optimizer.step()  # and the step runs on the DTensor
finally:
    dist.destroy_process_group()
"""


def test_dtensor_parameters_keep_torchs_default_implementation(tmp_path: Path) -> None:
    done = run_script(_DTENSOR_DEFAULTS, tmp_path, GLOO_SOCKET_IFNAME="lo")
    assert done.returncode == 0, done.stderr


def test_pytorch_optimizers_adamw_is_torchs() -> None:
    """The performance page compares with torch only, because this peer is torch."""
    peer = pytest.importorskip("pytorch_optimizer")
    import torch

    assert peer.AdamW is torch.optim.AdamW
