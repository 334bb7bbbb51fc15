"""The face models on the LiteRT runtime: loaded once per thread, since an interpreter is not
safe to call from two threads at once and the local backend runs photos on a thread pool."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import Interpreter

_MODELS = resources.files("core.engine") / "models"
_local = threading.local()
_first_load = threading.Lock()
_announced = False


@dataclass(frozen=True)
class Model:
    """A model file shipped in `core/engine/models`, with its square input side in pixels."""

    file: str
    side: int

    def run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """The model's outputs, in its own output order, for one NHWC float32 input batch."""
        interpreter = _interpreter(self)
        index = interpreter.get_input_details()[0]["index"]
        if tuple(interpreter.get_input_details()[0]["shape"]) != tensor.shape:
            interpreter.resize_tensor_input(index, list(tensor.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(index, tensor)
        interpreter.invoke()
        return [
            np.array(interpreter.get_tensor(detail["index"]), dtype=np.float32)
            for detail in interpreter.get_output_details()
        ]


SHORT_RANGE = Model("face_detection_short_range.tflite", 128)
FULL_RANGE = Model("face_detection_full_range.tflite", 192)
FACE_MESH = Model("face_landmark.tflite", 192)


def _interpreter(model: Model) -> Interpreter:
    cache: dict[str, Interpreter] | None = getattr(_local, "interpreters", None)
    if cache is None:
        cache = _local.interpreters = {}
    interpreter = cache.get(model.file)
    if interpreter is None:
        interpreter = cache[model.file] = _load(model)
    return interpreter


def _load(model: Model) -> Interpreter:
    with resources.as_file(_MODELS / model.file) as path, _quiet_first_delegate():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


@contextmanager
def _quiet_first_delegate() -> Iterator[None]:
    """Keep LiteRT's one-time "Created TensorFlow Lite XNNPACK delegate" notice off stderr.

    The runtime prints it from C++ on the first interpreter of a process, with no switch to
    turn it off, so file descriptor 2 points at /dev/null while that one is built.
    """
    global _announced
    with _first_load:
        if _announced:
            yield
            return
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            _announced = True
