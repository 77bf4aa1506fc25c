"""``jaxclf-report <sweep dir>``: a multirun's results, one row per setting.

Writes into the sweep directory (or ``--output``):

* ``report.md``: per setting, mean ± sample standard deviation over seeds of
  test accuracy, NLL and ECE and of the train-minus-validation accuracy gap,
  with the change against a baseline setting; the failed jobs and why.
* ``curves.png``: training vs validation accuracy and loss over steps, per
  setting (the overfitting picture).
* ``accuracy_vs_ece.png``: test accuracy against test ECE, per setting.

Also ``python -m jaxclf.studies.report``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxclf.console import quiet_libraries
from jaxclf.errors import ConfigError
from jaxclf.run_dir import SUMMARY_FILE, read_json
from jaxclf.studies.results import Job, Setting, group_by_setting, load_jobs

REPORT_FILE = "report.md"
CURVES_FILE = "curves.png"
ACCURACY_VS_ECE_FILE = "accuracy_vs_ece.png"

# (column, summary path, scale, unit)
COLUMNS = (
    ("test accuracy", ("test", "accuracy"), 100.0, "%"),
    ("test NLL", ("test", "nll"), 1.0, ""),
    ("test ECE", ("test", "ece"), 1.0, ""),
    ("train − val accuracy", ("train_minus_validation_accuracy",), 100.0, " pp"),
)
# (panel, train tag, validation tag)
CURVES = (
    ("accuracy", "train/accuracy", "eval/accuracy"),
    ("loss", "train/loss", "eval/loss"),
)


def sample_std(values: np.ndarray) -> float:
    """Standard deviation over seeds with Bessel's correction (0 for one seed)."""
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def mean_std(values: np.ndarray, scale: float, unit: str) -> str:
    """``mean ± std`` over seeds; one seed has no spread to show: its value alone."""
    if values.size == 0:
        return "–"
    digits = 1 if scale == 100.0 else 3
    if values.size == 1:
        return f"{values[0] * scale:.{digits}f}{unit}"
    return f"{values.mean() * scale:.{digits}f} ± {sample_std(values) * scale:.{digits}f}{unit}"


def signed_difference(values: np.ndarray, baseline: np.ndarray, scale: float, unit: str) -> str:
    if values.size == 0 or baseline.size == 0:
        return "–"
    digits = 1 if scale == 100.0 else 3
    return f"{(values.mean() - baseline.mean()) * scale:+.{digits}f}{unit}"


def markdown_table(settings: Sequence[Setting], baseline: Setting) -> list[str]:
    header = [
        "setting",
        "seeds",
        *(column for column, *_ in COLUMNS),
        "Δ test accuracy",
        "Δ gap",
        "steps",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting in settings:
        cells = [f"`{setting.name}`", f"{len(setting.finished)}/{len(setting.jobs)}"]
        cells += [mean_std(setting.values(path), scale, unit) for _, path, scale, unit in COLUMNS]
        for _, path, scale, unit in (COLUMNS[0], COLUMNS[3]):
            unit = " pp" if unit == "%" else unit  # a difference of percentages
            cells.append(
                "baseline"
                if setting is baseline
                else signed_difference(setting.values(path), baseline.values(path), scale, unit)
            )
        steps = setting.values(("steps",))
        cells.append(f"{steps.mean():.0f}" if steps.size else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(sweep_dir: str, output_dir: str, baseline_name: str | None = None) -> str:
    """Builds ``report.md`` and the plots; returns the report's path."""
    jobs = load_jobs(sweep_dir)
    settings = group_by_setting(jobs)
    names = [setting.name for setting in settings]
    if baseline_name is not None and baseline_name not in names:
        raise ConfigError(f"--baseline={baseline_name!r} is not a setting of this sweep; choose one of {names}")
    baseline = settings[names.index(baseline_name)] if baseline_name else settings[0]
    os.makedirs(output_dir, exist_ok=True)
    lines = [
        *summary_lines(sweep_dir, jobs, settings, baseline),
        *jobs_without_results(jobs),
        "## Plots",
        "",
        f"![training vs validation curves]({CURVES_FILE})",
        "",
        (
            "Training curves are running averages over the training batches as trained (augmented, with dropout, "
            "against the run's own targets: for soft targets the loss includes their entropy); validation loss is "
            "the NLL of the true labels (log scale). Thin lines: seeds; thick: their mean."
        ),
        "",
        f"![test accuracy vs ECE]({ACCURACY_VS_ECE_FILE})",
        "",
    ]
    plot_curves(settings, os.path.join(output_dir, CURVES_FILE))
    plot_accuracy_vs_ece(settings, os.path.join(output_dir, ACCURACY_VS_ECE_FILE))
    path = os.path.join(output_dir, REPORT_FILE)
    with open(path, "w") as file:
        file.write("\n".join(lines))
    return path


def summary_lines(sweep_dir: str, jobs: Sequence[Job], settings: Sequence[Setting], baseline: Setting) -> list[str]:
    """The title, the counts, the table of settings and the teacher."""
    failed = sum(job.failure is not None for job in jobs)
    unfinished = sum(job.summary is None and job.failure is None for job in jobs)
    lines = [
        f"# Sweep `{sweep_dir}`",
        "",
        (
            f"{len(jobs)} jobs in {len(settings)} settings: {len(jobs) - failed - unfinished} finished, "
            f"{failed} failed, {unfinished} unfinished. Mean ± sample standard deviation over seeds; "
            f"Δ against `{baseline.name}`; the gap is training accuracy (the first "
            "`evaluation.train_examples` training examples, without augmentation) minus validation accuracy, "
            "in percentage points, for the tested model."
        ),
        "",
        *markdown_table(settings, baseline),
        "",
    ]
    teacher = read_json(os.path.join(sweep_dir, "teacher", SUMMARY_FILE))
    if teacher:
        lines += [
            f"Teacher (`teacher/`): test accuracy {teacher['test']['accuracy']:.2%}, ECE {teacher['test']['ece']:.3f}.",
            "",
        ]
    return lines


def jobs_without_results(jobs: Sequence[Job]) -> list[str]:
    """A table of the failed and unfinished jobs (nothing when there are none)."""
    failed = [job for job in jobs if job.failure is not None]
    unfinished = [job for job in jobs if job.summary is None and job.failure is None]
    if not failed and not unfinished:
        return []
    lines = ["## Jobs without results", "", "| job | error |", "|---|---|"]
    for job in failed:
        failure = job.failure or {}
        message = failure["message"].splitlines()[0] if failure["message"] else ""
        lines.append(f"| `{job.name}` | {failure['error']}: {message} |")
    lines += [f"| `{job.name}` | no summary.json or failure.json (still running, or killed) |" for job in unfinished]
    return [*lines, ""]


def mean_curve(
    curves: Sequence[list[tuple[int, float]]],
) -> tuple[np.ndarray, np.ndarray]:
    """The mean over seeds at the steps every seed logged."""
    common = sorted(set.intersection(*({step for step, _ in curve} for curve in curves)))
    by_step = [dict(curve) for curve in curves]
    return np.asarray(common), np.asarray([np.mean([values[step] for values in by_step]) for step in common])


def plot_curves(settings: Sequence[Setting], path: str) -> None:
    figure = Figure(figsize=(3.2 * len(settings), 6.0), layout="constrained")
    axes = figure.subplots(len(CURVES), len(settings), sharex=True, sharey="row", squeeze=False)
    for column, setting in enumerate(settings):
        scalars = [job.scalars() for job in setting.jobs]
        axes[0, column].set_title(setting.name, fontsize=9)
        for row, (panel, train_tag, validation_tag) in enumerate(CURVES):
            ax = axes[row, column]
            for tag, color, label in (
                (train_tag, "tab:blue", "train"),
                (validation_tag, "tab:orange", "validation"),
            ):
                curves = [job_scalars[tag] for job_scalars in scalars if job_scalars.get(tag)]
                for curve in curves:
                    ax.plot(*zip(*curve, strict=True), color=color, alpha=0.25, linewidth=0.8)
                if curves:
                    ax.plot(*mean_curve(curves), color=color, linewidth=2.0, label=label)
            ax.grid(alpha=0.3)
            if panel == "loss":
                ax.set_yscale("log")  # objectives differ in scale (a distillation loss carries T^2)
            if column == 0:
                ax.set_ylabel(panel)
            if row == len(CURVES) - 1:
                ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def plot_accuracy_vs_ece(settings: Sequence[Setting], path: str) -> None:
    figure = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = figure.subplots()
    for index, setting in enumerate(settings):
        color = f"C{index % 10}"
        accuracy, ece = (
            setting.values(("test", "accuracy")) * 100,
            setting.values(("test", "ece")),
        )
        if accuracy.size == 0 or accuracy.size != ece.size:
            continue
        ax.scatter(ece, accuracy, color=color, alpha=0.35, s=18)
        ax.errorbar(
            ece.mean(),
            accuracy.mean(),
            xerr=sample_std(ece),
            yerr=sample_std(accuracy),
            color=color,
            marker="o",
            capsize=3,
            label=setting.name,
        )
    ax.set_xlabel("test ECE (lower is better)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxclf-report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sweep_dir",
        help="a multirun sweep directory, e.g. multirun/2026-11-28/10-00-00",
    )
    parser.add_argument(
        "--output",
        help="where to write report.md and the plots (default: the sweep directory)",
    )
    parser.add_argument(
        "--baseline",
        help="the setting the Δ columns compare against (default: the first)",
    )
    args = parser.parse_args(argv)
    quiet_libraries()  # TensorBoard's reader imports TensorFlow, which greets at INFO
    try:
        path = write_report(args.sweep_dir, args.output or args.sweep_dir, args.baseline)
    except ConfigError as error:
        print(f"jaxclf-report: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
