"""Model runners behind the recogniser: :mod:`.torch` (checkpoints, heat-map gradients) and
:mod:`.onnx` (exported files, no torch). Each has ``record`` (a :class:`ModelRecord`) and
``logits(batch)``: float32 ``(N, 1, 28, 28)`` in [0, 1], ink = 1 -> ``(N, 10)`` logits."""
