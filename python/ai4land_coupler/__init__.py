"""ai4land-coupler: land-use and LAI U-Net emulators coupled into Fortran/MPI climate models.

Python hosts use :class:`Component` directly; Fortran and C hosts go through ``fortran_bridge``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ai4land-coupler")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

from .partition import Box, Points  # noqa: E402

__all__ = ["Box", "Component", "Points", "__version__"]


def __getattr__(name):  # Component pulls in torch: import it only when asked for
    if name == "Component":
        from .component import Component

        return Component
    raise AttributeError(name)
