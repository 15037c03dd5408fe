"""Build hooks live here (the compiled CPU backend is added by the csrc work); metadata is in pyproject.toml."""
from setuptools import setup

setup()
