"""The evaluation images: blitting draws what a full draw would, and each image shows only its own data."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxclf.evaluation import EvalResults
from jaxclf.figures.calibration import ReliabilityDiagram
from jaxclf.figures.canvas import DPI, BlittedFigure
from jaxclf.figures.confusion import ConfusionImage
from jaxclf.figures.evaluation import EvaluationFigures
from jaxclf.figures.mistakes import mistakes_grid
from jaxclf.metrics import NUM_CALIBRATION_BINS

SIZE = (3.0, 2.5)


def _plot(figure: Figure, heights: np.ndarray, animated: bool) -> list:
    """Bars under a line and a label, each changing with ``heights``; legend and axes stay."""
    axes = figure.add_subplot()
    bars = axes.bar(range(len(heights)), heights, label="bars")
    (line,) = axes.plot(heights[::-1], "k--", label="line")
    label = axes.text(0, 0.5, f"{heights.sum():.2f}")
    figure.legend(loc="center right")  # beside the axes: nothing changing is drawn over it
    figure.subplots_adjust(right=0.6)
    axes.set(ylim=(0, 1.2), xlabel="x", ylabel="y")
    changing = [*bars, line, label, *axes.spines.values()]
    for artist in changing:
        artist.set_animated(animated)
    return changing


def _update(changing: list, heights: np.ndarray) -> None:
    for bar, height in zip(changing, heights, strict=False):
        bar.set_height(height)
    changing[len(heights)].set_ydata(heights[::-1])
    changing[len(heights) + 1].set_text(f"{heights.sum():.2f}")


def test_a_blitted_figure_draws_the_same_pixels_as_a_full_draw():
    first, last = np.array([0.2, 0.9, 0.4]), np.array([1.0, 0.1, 0.6])
    blitted = BlittedFigure(SIZE)
    changing = _plot(blitted.figure, first, animated=True)
    blitted.freeze()
    blitted.render(changing)  # a first image, which must leave nothing behind
    _update(changing, last)
    image = blitted.render(changing)

    reference = Figure(figsize=SIZE, dpi=DPI)
    canvas = FigureCanvasAgg(reference)
    _plot(reference, last, animated=False)
    canvas.draw()
    np.testing.assert_array_equal(image, np.asarray(canvas.buffer_rgba())[..., :3])


def test_a_blitted_figure_must_be_frozen_before_it_renders():
    with pytest.raises(RuntimeError, match="freeze"):
        BlittedFigure(SIZE).render([])


def _bins(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 40, NUM_CALIBRATION_BINS).astype(np.float64)
    count[rng.integers(NUM_CALIBRATION_BINS)] = 0  # an empty bin
    centres = (np.arange(NUM_CALIBRATION_BINS) + 0.5) / NUM_CALIBRATION_BINS
    return {"count": count, "confidence": count * centres, "correct": np.floor(count * rng.uniform(0, 1))}


def test_a_reliability_diagram_shows_only_its_own_evaluation():
    diagram = ReliabilityDiagram(NUM_CALIBRATION_BINS)
    earlier = diagram(**_bins(1), title="eval, step 100")
    image = diagram(**_bins(2), title="eval, step 200")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert image.shape[0] >= 200 and image.std() > 10  # not blank
    assert not np.array_equal(image, earlier)
    np.testing.assert_array_equal(image, ReliabilityDiagram(NUM_CALIBRATION_BINS)(**_bins(2), title="eval, step 200"))


@pytest.mark.parametrize("num_classes", [6, 30])  # every cell labelled; too many to label
def test_a_confusion_image_shows_only_its_own_matrix(num_classes):
    rng = np.random.default_rng(num_classes)
    counts = [rng.integers(0, 5, (num_classes, num_classes)) + 20 * np.eye(num_classes) for _ in range(2)]
    figure = ConfusionImage(num_classes)
    earlier = figure(counts[0], title="eval, step 100")
    image = figure(counts[1], title="eval, step 200")
    assert image.dtype == np.uint8 and image.shape[-1] == 3 and image.std() > 10
    assert not np.array_equal(image, earlier)
    np.testing.assert_array_equal(image, ConfusionImage(num_classes)(counts[1], title="eval, step 200"))


@pytest.mark.parametrize("shape", [(5, 8, 8, 1), (3, 12, 10, 3), (0, 1, 1, 1)])
def test_the_mistakes_grid_draws_any_number_of_grey_or_colour_images(shape):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, shape).astype(np.uint8)
    probs = rng.dirichlet(np.ones(10), shape[0])
    grid = mistakes_grid(images, rng.integers(0, 10, shape[0]), probs, title="test")
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[-1] == 3
    assert grid.std() > (10 if len(images) else 0)  # the images; with none, the title alone


def test_an_evaluation_is_drawn_as_its_reliability_diagram_and_confusion_matrix():
    counts = np.random.default_rng(0).integers(0, 5, (6, 6)) + 20 * np.eye(6)
    results = EvalResults({"ece": 0.05, "accuracy": 0.9}, _bins(3), counts)
    images = EvaluationFigures()("eval", 100, results)
    assert set(images) == {"eval/reliability_diagram", "eval/confusion_matrix"}
    diagram = ReliabilityDiagram(NUM_CALIBRATION_BINS)(**_bins(3), title="eval, step 100: ECE 0.0500")
    np.testing.assert_array_equal(images["eval/reliability_diagram"], diagram)
    matrix = ConfusionImage(6)(counts, title="eval, step 100: accuracy 0.9000")
    np.testing.assert_array_equal(images["eval/confusion_matrix"], matrix)


def test_a_blitted_figure_forgets_each_images_temporary_labels():
    blitted = BlittedFigure(SIZE)
    axes = blitted.figure.add_subplot()
    blitted.freeze()
    label = axes.text(0.5, 0.5, "this image only", animated=True)
    blitted.render([], temporary=[label])
    assert label not in axes.texts
