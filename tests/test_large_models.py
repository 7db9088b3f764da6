"""A 1.25 GiB torch state dict: saving streams with bounded memory, loading maps the file.

Each half runs in a fresh interpreter so that its memory figures are its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from amber.container.writer import CHUNK_BYTES

pytestmark = pytest.mark.slow

SAVE = """
import json, resource, sys, torch, amber
torch.manual_seed(0)
layers = {}
for i in range(4):  # 4 x 256 MiB of float32, touched (real memory)
    layers[f"layers.{i}.weight"] = torch.randn(1 << 13, 1 << 13)
layers["head.weight"] = torch.randn(1 << 12, 1 << 13).t()  # 128 MiB, non-contiguous
layers["embed.weight"] = torch.randn(1 << 12, 1 << 13).to(torch.bfloat16)  # 64 MiB
layers["tied.weight"] = layers["embed.weight"].detach()  # shares the embedding's storage
layers["rows"] = layers["layers.0.weight"][100:200]  # a view into a layer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
amber.save(layers, sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checksums = {k: float(v.double().sum()) for k, v in layers.items()}
print(json.dumps({"growth_mib": (after - before) // 1024, "sums": checksums}))
"""

LOAD = """
import json, sys, torch, amber

def anon_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) // 1024

torch.zeros(1)  # torch's own allocations, before the baseline
before = anon_mib()
state = amber.load(sys.argv[1])  # verify="full": every byte hashed, nothing copied
grown = anon_mib() - before
sums = {k: float(v.double().sum()) for k, v in state.items()}
shared = state["tied.weight"].data_ptr() == state["embed.weight"].data_ptr()
print(json.dumps({"anon_growth_mib": grown, "sums": sums, "shared": shared}))
"""


def _run(script: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_large_state_dict_saves_streaming_and_loads_zero_copy(tmp_path: Path) -> None:
    path = tmp_path / "large.amber"
    saved = _run(SAVE, path)
    # Beyond the tensors themselves: about one chunk for the non-contiguous copy.
    assert saved["growth_mib"] < 4 * CHUNK_BYTES // (1 << 20), saved["growth_mib"]
    assert path.stat().st_size > 1200 << 20
    loaded = _run(LOAD, path)
    assert loaded["sums"] == saved["sums"]
    assert loaded["shared"]
    # 1.25 GiB loaded and fully verified; private memory barely moves (the file is mapped).
    assert loaded["anon_growth_mib"] < 64, loaded["anon_growth_mib"]
    path.unlink()
