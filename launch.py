"""jaxclf's command line: ``python launch.py [group=option ...] [key=value ...]``.

Hydra composes ``conf/`` (validated against ``jaxclf.config``); the library does
the rest. A bad value ends the run with one line on stderr and exit code 2
(a traceback too with ``HYDRA_FULL_ERROR=1``); a run stopped early (SIGTERM,
SIGINT, a non-finite loss) with one line and its own exit code.
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import jaxclf.config  # noqa: F401  (registers the config schema with Hydra)
from jaxclf.errors import ConfigError, RunStopped


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from jaxclf.run import run  # imported here so that a bad command line fails fast

    try:
        results = run(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, RunStopped) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        kind = "error" if isinstance(error, ConfigError) else "stopped"
        print(f"jaxclf: {kind}: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ConfigError) else error.exit_code)
    return results.get("validation", {}).get("accuracy")  # the objective Hydra sweepers optimise


if __name__ == "__main__":
    main()
