"""What each framework does beside a CPU torch, with torchvision absent, working, or PyPI's CUDA build.

The table of docs/integrations.md ("Installing on a CPU-only torch"), checked in a fresh
interpreter that does not apply this directory's conftest.py workaround.
"""

from __future__ import annotations

import json
import subprocess
import sys

IMPORTS = {
    "torchvision": "import torchvision",
    "lightning": "import lightning.pytorch",
    "transformers.Trainer": "from transformers import Trainer",
    "accelerate": "import accelerate",
    "skorch": "import skorch",
    "timm": "import timm",
}
SCRIPT = f"""
import json
outcomes = {{}}
for name, statement in {IMPORTS!r}.items():
    try:
        exec(statement)
        outcomes[name] = None
    except Exception as error:
        outcomes[name] = [type(error).__name__, str(error)]
print(json.dumps(outcomes))
"""
BROKEN = ["RuntimeError", "operator torchvision::nms does not exist"]
# Per state of torchvision: the error each import raises (type, message), or None.
EXPECTED = {
    "absent": {
        **dict.fromkeys(IMPORTS),
        "torchvision": ["ModuleNotFoundError", "No module named 'torchvision'"],
        "timm": ["ModuleNotFoundError", "No module named 'torchvision'"],
    },
    "CUDA build beside a CPU torch": {
        **dict.fromkeys(IMPORTS),
        "torchvision": BROKEN,
        "lightning": BROKEN,  # through torchmetrics
        "timm": BROKEN,
        "transformers.Trainer": ["ModuleNotFoundError", "Could not import module 'Trainer'."],
    },
    "working": dict.fromkeys(IMPORTS),
}


def test_imports_without_the_workaround() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True
    )
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    for outcome in outcomes.values():
        if outcome is not None:  # keep the first line: what the docs quote
            outcome[1] = outcome[1].splitlines()[0].split(" Are this object's")[0]
    state = {
        None: "working",
        "ModuleNotFoundError": "absent",
        "RuntimeError": "CUDA build beside a CPU torch",
    }[(outcomes["torchvision"] or [None])[0]]
    assert outcomes == EXPECTED[state], state
