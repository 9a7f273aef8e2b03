"""Errors that fail one video, or one command, with a one-line reason instead of stopping the run."""
from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """A model named in the configuration is neither on disk nor in the local Hugging Face cache (castline never
    downloads one). Raised while a stage's key is computed as well as when the model loads, so every place that
    turns a per-video failure into a one-line reason catches it."""

    @classmethod
    def offline(cls, model: str, why: str = "") -> "ModelUnavailable":
        return cls(f"model {model} is not available offline{f' ({why})' if why else ''}: put it in the Hugging Face "
                   f"cache or give a local path")
