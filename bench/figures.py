"""What the evaluation images cost a run: importing matplotlib, drawing each
figure's frame (once a run), each image blitted over it, and the mistakes grid.

A frame is a whole figure built and drawn (``canvas.draw()``): about what
every image cost before the frames were kept. Each repeat times every row in
turn; medians and every repeat are printed.

    python bench/figures.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import numpy as np

import record  # bench/ is on sys.path when this script runs
from workload import seconds  # bench/ is on sys.path when this script runs

IMPORT = "import time; t = time.perf_counter(); import jaxclf.figures.canvas; print(time.perf_counter() - t)"


def import_seconds() -> float:
    """Importing matplotlib's figure and Agg canvas in a fresh process (NumPy and PIL already in)."""
    command = f"import numpy, PIL.Image; {IMPORT}"
    return float(subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from jaxclf.figures.calibration import ReliabilityDiagram
    from jaxclf.figures.confusion import ConfusionImage
    from jaxclf.figures.mistakes import mistakes_grid
    from jaxclf.metrics import NUM_CALIBRATION_BINS

    rng = np.random.default_rng(0)
    count = rng.integers(0, 50, NUM_CALIBRATION_BINS).astype(np.float64)
    bins = {"count": count, "confidence": count * 0.8, "correct": np.floor(count * 0.7)}
    counts = 30 * np.eye(10)  # a trained model's: the diagonal and a few mistakes
    counts[rng.integers(0, 10, 5), rng.integers(0, 10, 5)] += 1
    images = rng.integers(0, 16, (16, 8, 8, 1)).astype(np.uint8)
    labels, probs = rng.integers(0, 10, 16), rng.dirichlet(np.ones(10), 16)

    diagram, matrix = ReliabilityDiagram(NUM_CALIBRATION_BINS), ConfusionImage(10)
    rows = {
        "import matplotlib (fresh process)": import_seconds,
        "reliability diagram: frame": lambda: ReliabilityDiagram(NUM_CALIBRATION_BINS),
        "reliability diagram: image": lambda: diagram(**bins, title="eval, step 100"),
        "confusion matrix: frame": lambda: ConfusionImage(10),
        "confusion matrix: image": lambda: matrix(counts, title="eval, step 100"),
        "mistakes grid (16 images)": lambda: mistakes_grid(images, labels, probs, title="test"),
    }
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            times.setdefault(name, []).append(fn() if name.startswith("import") else seconds(fn))
    print(f"seconds, median of {args.repeats} (every repeat)")
    for name, values in times.items():
        print(f"  {name:<36}{statistics.median(values):7.3f}   ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    record.run(main)
