"""Error types that the command line turns into one clear line and a non-zero exit."""


class AutotuneError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""


class GraphError(AutotuneError, ValueError):
    """A graph is malformed: cycle, dangling tensor, bad or mismatched shape."""


class ConfigError(AutotuneError, ValueError):
    """A hardware config or other settings file is invalid."""


class ModelFileError(AutotuneError):
    """A trained-model folder is missing, corrupted or made for other hardware."""


class DatasetError(AutotuneError):
    """A dataset folder is missing, empty or inconsistent with the request."""
