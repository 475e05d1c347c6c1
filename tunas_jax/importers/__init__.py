"""Importers: an existing model (ONNX, .tflite, a JAX/Flax callable) as a network description.

`import_model(source)` picks the importer from the source: a path ending in
`.onnx` (optional extra `onnx`), `.tflite` (optional extra `tflite`), or
`module.path:function` (a JAX callable traced to its jaxpr). The result is a
validated `search_spaces.network.NetworkDescription` that the simulator can
cost; `tunas-jax import` writes it as JSON.
"""

from __future__ import annotations

import os

from search_spaces.errors import SpecError
from search_spaces.network import NetworkDescription, Shape


def import_model(source: str | os.PathLike, input_shape: Shape | None = None,
                 name: str | None = None) -> NetworkDescription:
    """The network description of `source` (see the module docstring for what it may be)."""
    text = os.fspath(source)
    suffix = os.path.splitext(text)[1].lower()
    if suffix == ".onnx":
        from tunas_jax.importers.onnx_importer import import_onnx

        return import_onnx(text, input_shape, name)
    if suffix == ".tflite":
        from tunas_jax.importers.tflite_importer import import_tflite

        return import_tflite(text, input_shape, name)
    if ":" in text and not os.path.exists(text):
        from tunas_jax.importers.jaxpr_importer import import_callable

        return import_callable(text, input_shape, name)
    raise SpecError(f"model {text!r}: not a .onnx or .tflite file nor module.path:function; "
                    "name one of those")


__all__ = ["import_model"]
