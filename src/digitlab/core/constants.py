"""The constants of the problem, each written once.

Everything here is a fact about the task (ten classes, 28x28 inputs, MNIST's own recipe) or a
limit the whole system shares (the largest image accepted, the image formats read). Modules
that need one import it from here; no other module restates it.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- the task --------------------------------------------------------------------------------
NUM_CLASSES = 10  # the digits 0-9
IMAGE_SIDE = 28  # MNIST images are 28x28 ...
IMAGE_SHAPE = (1, IMAGE_SIDE, IMAGE_SIDE)  # ... one channel: the network's input is (N, *this)
PIXELS = IMAGE_SIDE * IMAGE_SIDE  # 784 values per image (a Kaggle CSV row)
# MNIST's recipe (LeCun et al.): each digit was fitted into a 20x20 box keeping its aspect ratio,
# then centred by its centre of mass in the 28x28 field. The engine reproduces it.
MNIST_BOX = 20
# MNIST's pixel statistics (ink = 1 on a 0 background): the networks normalise with them.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

# --- limits ----------------------------------------------------------------------------------
# The largest image any front end decodes, in pixels. A 50-megapixel photo is larger than any
# phone camera's (a 48 MP sensor is 8000x6000); above it an upload is far more likely a
# decompression bomb (a small PNG that inflates to gigabytes) than a digit, and decoding it
# would take seconds and gigabytes. Checked from the header, before decoding.
MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageFormat:
    """One image format digitlab reads: Pillow's name, the name users know, file suffixes."""

    pillow: str
    label: str
    suffixes: tuple[str, ...]


# The one table of image formats every front end accepts (CLI folders and globs, the server's
# uploads, the desktop app's Open dialog, the engine's decoder). Pillow is told to try only
# these, so an upload cannot reach one of Pillow's rarer, less hardened decoders.
IMAGE_FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("PNG", "PNG", (".png",)),
    ImageFormat("JPEG", "JPEG", (".jpg", ".jpeg")),
    ImageFormat("GIF", "GIF", (".gif",)),
    ImageFormat("BMP", "BMP", (".bmp",)),
    ImageFormat("WEBP", "WebP", (".webp",)),
    ImageFormat("TIFF", "TIFF", (".tif", ".tiff")),
    ImageFormat("PPM", "PPM/PGM", (".ppm", ".pgm", ".pnm")),
)
PILLOW_FORMATS = tuple(f.pillow for f in IMAGE_FORMATS)
IMAGE_SUFFIXES = tuple(s for f in IMAGE_FORMATS for s in f.suffixes)
IMAGE_FORMATS_TEXT = (
    ", ".join(f.label for f in IMAGE_FORMATS[:-1]) + f" or {IMAGE_FORMATS[-1].label}"
)

# --- option choices shared by the library and the command line -------------------------------
BACKENDS = ("auto", "torch", "onnx")  # which runtime runs a model (auto: by file type)
OUTPUT_FORMATS = ("table", "json", "csv")  # `digitlab predict --format`
