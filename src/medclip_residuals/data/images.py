"""Decoding chest X-ray images to one grey float32 array in [0, 1].

Formats of the data contract, recognised by their content (not their extension):
PNG and JPEG through Pillow (8- or 16-bit; grey, grey+alpha, palette, RGB, RGBA; colour is
reduced to luminance with ITU-R 601-2 weights and alpha is dropped) and DICOM through
pydicom (modality LUT, then the VOI LUT or window with pydicom's own functions; MONOCHROME1
inverted so that bone is bright, as in MONOCHROME2). Anything else raises `ImageDecodeError`
naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_EXTENSIONS = (".dcm", ".dicom")
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageDecodeError(ValueError):
    """An image file is missing, of an unsupported format, or cannot be decoded."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _sniff(path: Path) -> str:
    """Return "png", "jpeg" or "dicom" from the file's first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not an image file") from None
    except OSError as error:
        raise ImageDecodeError(path, f"cannot be read ({error.strerror or error})") from None
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    # DICOM Part 10 files carry "DICM" after a 128-byte preamble; some exports omit the
    # preamble, which pydicom reads with force=True when the extension says DICOM.
    if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_EXTENSIONS:
        return "dicom"
    if not head:
        raise ImageDecodeError(path, "file is empty")
    raise ImageDecodeError(path, "unsupported image format (expected PNG, JPEG or DICOM)")


def _pil_to_grey(image: Image.Image, path: Path) -> np.ndarray:
    """Grey float32 in [0, 1] from a decoded Pillow image of any contract mode."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode == "I":
        # 16-bit grey PNGs open as "I" in some Pillow versions; values stay within 16 bits
        array = np.asarray(image, dtype=np.int64)
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise ImageDecodeError(path, "32-bit integer pixels are not supported (8- or 16-bit only)")
        return array.astype(np.float32) / 65535.0
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(image, dtype=np.float32)[..., 0] / 255.0
    if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La"):
        image = image.convert("RGB")
        mode = "RGB"
    if mode in ("RGB", "RGBA", "RGBa"):
        rgb = np.asarray(image, dtype=np.float32)[..., :3]  # alpha dropped, not composited
        return (rgb @ _LUMA) / 255.0
    raise ImageDecodeError(path, f"unsupported pixel mode {mode!r}")


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()  # decode everything now, so that truncated files fail here
            return _pil_to_grey(image, path)
    except ImageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds; report them all alike
        raise ImageDecodeError(path, f"cannot be decoded ({type(error).__name__}: {error})") from None


def _voi_output_range(ds, modality: np.ndarray) -> tuple[float, float] | None:
    """The value range pydicom's apply_voi_lut maps onto, or None when it applies nothing.

    Found by asking pydicom itself: every LUT entry for a VOI LUT, the two saturated ends
    of the window for a (linear or sigmoid) window.
    """
    from pydicom.pixels import apply_voi_lut

    sequence = ds.get("VOILUTSequence")
    if sequence and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData")):
        entries, first_map = int(sequence[0].LUTDescriptor[0]) or 2**16, int(sequence[0].LUTDescriptor[1])
        probe = np.arange(first_map, first_map + entries, dtype=np.int64)
        lut = apply_voi_lut(probe, ds, index=0)
        return float(lut.min()), float(lut.max())
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        probe = np.array([-1e30, 1e30], dtype=np.float64)
        ends = apply_voi_lut(probe, ds, index=0)
        return float(ends.min()), float(ends.max())
    return None


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ImageDecodeError(
                path, f"DICOM PhotometricInterpretation {photometric or '(missing)'!r} is not supported "
                "(MONOCHROME1 or MONOCHROME2 only)"
            )
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise ImageDecodeError(path, f"multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported")
        raw = ds.pixel_array
        values = apply_modality_lut(raw, ds)
        if np.issubdtype(values.dtype, np.floating) and np.array_equal(values, np.rint(values)):
            values = values.astype(np.int64)  # a VOI LUT indexes with integers
        out_range = _voi_output_range(ds, values)
        if out_range is not None:
            values = apply_voi_lut(values, ds, index=0)
            low, high = out_range
        else:
            # no window in the file: stretch the image's own range
            low, high = float(values.min()), float(values.max())
        grey = np.asarray(values, dtype=np.float64)
        grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
        grey = np.clip(grey, 0.0, 1.0).astype(np.float32)
    except ImageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds; report them all alike
        raise ImageDecodeError(path, f"cannot be decoded as DICOM ({type(error).__name__}: {error})") from None
    if grey.ndim != 2:
        raise ImageDecodeError(path, f"DICOM pixel data has shape {grey.shape}, expected one grey frame")
    if photometric == "MONOCHROME1":
        grey = 1.0 - grey  # MONOCHROME1: minimum value is white
    return grey


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG, JPEG or DICOM file as a grey float32 (H, W) array in [0, 1]."""
    path = Path(path)
    kind = _sniff(path)
    grey = _read_dicom(path) if kind == "dicom" else _read_pil(path)
    if grey.ndim != 2 or grey.size == 0:
        raise ImageDecodeError(path, f"decoded to shape {grey.shape}, expected a non-empty 2-D image")
    return np.ascontiguousarray(grey, dtype=np.float32)


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels."""
    path = Path(path)
    kind = _sniff(path)
    try:
        if kind == "dicom":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            return int(ds.Rows), int(ds.Columns)
        with Image.open(path) as image:
            width, height = image.size
            return int(height), int(width)
    except Exception as error:  # noqa: BLE001
        raise ImageDecodeError(path, f"cannot read the image header ({type(error).__name__}: {error})") from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask image (any format `read_image` reads) as bool (H, W): non-zero = inside."""
    return read_image(path) > 0
