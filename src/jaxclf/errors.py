"""The one exception type that means "the user asked for something invalid"."""


class ConfigError(ValueError):
    """A bad configuration value; its message is one line naming the key, the
    value, and what is valid. `launch.py` prints it without a traceback."""
