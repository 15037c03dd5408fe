"""The ``Example::`` of every public function runs and prints what its docstring says."""

from __future__ import annotations

import doctest
import inspect
import math

import numpy as np
import pytest
import torch

import vbkernels
from vbkernels import _api, _dispatch, colormap, colormaps, instances

FUNCTIONS = [name for name in vbkernels.__all__ if name != "Instances"]


@pytest.mark.parametrize("module", [_api, _dispatch, instances, colormap, colormaps],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": torch, "math": math, "np": np},
                             optionflags=doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_functions_are_typed_and_documented(name):
    function = getattr(vbkernels, name)
    doc = function.__doc__ or ""
    assert "Returns:" in doc and "Example::" in doc, name
    parameters = set(inspect.signature(function).parameters)
    if parameters:
        assert "Args:" in doc, name
    assert set(function.__annotations__) == parameters | {"return"}, name
