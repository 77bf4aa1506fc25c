"""CLU metric collections for training and evaluation.

Training metrics are merged inside the jitted step and read out at each
logging period; evaluation metrics honour the ``mask`` of padded batches, so
every example of a split counts exactly once.
"""

import flax
from clu import metrics


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
    loss: metrics.Average.from_output("loss")  # mean of the steps' batch losses
    accuracy: metrics.Average.from_output("correct")
    learning_rate: metrics.LastValue.from_output("learning_rate")  # of the latest step


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
    loss: metrics.Average.from_output("loss")  # hard-label cross-entropy (NLL)
    accuracy: metrics.Accuracy

    @property
    def num_examples(self) -> int:
        """How many (unmasked) examples were merged in."""
        return int(self.accuracy.count)
