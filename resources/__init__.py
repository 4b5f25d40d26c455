"""Assets shipped inside the paramscope wheel (icons, stylesheet, examples)."""

from importlib.resources import files


def resource_path(name: str):
    """A Traversable for ``name`` under the packaged resources folder."""
    return files(__name__).joinpath(name)
