"""jaxclf's command line: ``python launch.py [group=option ...] [key=value ...]``.

The same as the installed ``jaxclf`` command (``jaxclf.cli``): Hydra composes
``conf/`` (the package's ``src/jaxclf/conf``), and the library does the rest.
"""

from jaxclf.cli import main

if __name__ == "__main__":
    main()
