"""Package data of mga-toolkit: prompt templates, the sample corpus and the reference labels."""
from importlib.resources import files
from pathlib import Path


def data_path(*parts: str) -> Path:
    """Path of a bundled data file (works from a checkout and from an installed wheel)."""
    return Path(str(files(__name__).joinpath(*parts)))
