"""What every bench script shares, imported first (`import _root`): the repository root on `sys.path` in
place of `bench/` (which `python bench/x.py` puts first, where `bench/extract.py` would shadow the `extract`
package), and the open graph built on demand.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def ensure_kg(kg_dir: Path, data_dir: Path | None) -> float | None:
    """Build the open graph into `kg_dir` with the installed CLI unless it is there; the seconds it took, or None."""
    if (kg_dir / "MRCONSO.RRF").exists():
        return None
    medkg = Path(sys.executable).parent / "medkg"
    command = [str(medkg) if medkg.exists() else "medkg", "kg", "build", "--source", "open", "--out", str(kg_dir)]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    print(f"building the open graph: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start
