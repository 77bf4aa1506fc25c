"""``mode=predict``'s settings (``predict`` in the config): plain data, cheap to
import, so a bad value is reported before JAX's libraries load."""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxclf.resumable import resumable


@dataclasses.dataclass
class PredictConfig:
    """``predict`` in the config (all of it may change on resume)."""

    # Image files, folders of images, or split names; one value or a list.
    inputs: Any = resumable("test")
    top_k: int = resumable(5)  # classes listed per image, most probable first
