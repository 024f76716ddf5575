"""Decoding chest X-ray images to one grey float32 array in [0, 1].

Formats are recognised by their content (not their extension):

- **PNG** through Pillow: 1/2/4/8-bit grey, palette, grey+alpha, RGB, RGBA, and 16-bit grey,
  grey+alpha, RGB and RGBA (16-bit colour through OpenCV, because Pillow keeps only the high
  byte). Colour is reduced to luminance with ITU-R 601-2 weights; alpha is dropped. 8-bit
  samples are divided by 255. 16-bit samples are divided by ``2**bits - 1`` where ``bits`` is:

  1. the ``sBIT`` chunk's significant bits (largest over the colour channels), when present.
     Samples above ``2**bits - 1`` were scaled up to 16 bits as the PNG specification asks;
     they are shifted back down by ``16 - bits`` first. sBIT is trusted over the values.
  2. otherwise the **max-value rule**: the smallest of 8, 10, 12, 14 and 16 bits that holds the
     image's largest sample (max <= 255 -> 8, <= 1023 -> 10, <= 4095 -> 12, <= 16383 -> 14,
     else 16). A 12-bit export (0..4095) thus comes out on the scale of its 8-bit version;
     no sample ever exceeds 1, and when the rule picks more than 8 bits the brightest sample
     is above 1/4 of full scale (a true 16-bit image that dark needs an sBIT chunk of 16).

- **JPEG** through Pillow: 8-bit baseline or progressive, grey, RGB or CMYK. 12-bit, 16-bit and
  lossless JPEG are refused with a clear error: Pillow cannot decode them; such JPEG is
  supported **inside DICOM only** (JPEG Extended 1.2.840.10008.1.2.4.51, JPEG Lossless .57/.70).
- For PNG and JPEG the EXIF Orientation tag is applied (Pillow's ``ImageOps.exif_transpose``),
  so a phone export tagged "rotate 90" comes out upright.
- **DICOM** through pydicom 3: uncompressed, RLE Lossless 1.2.840.10008.1.2.5 (pydicom's own
  decoder), JPEG Baseline .4.50 (Pillow or pylibjpeg-libjpeg), JPEG Extended 12-bit .4.51, JPEG
  Lossless .4.57/.4.70 and JPEG-LS .4.80/.4.81 (pylibjpeg-libjpeg), JPEG 2000 .4.90/.4.91 and
  HTJ2K (pylibjpeg-openjpeg); one frame, MONOCHROME1 or MONOCHROME2. Then the modality LUT,
  then the VOI LUT or window with pydicom's own functions (without one, the image's own range is stretched); MONOCHROME1 is
  inverted so that bone is bright, as in MONOCHROME2. A transfer syntax no installed plugin
  decodes raises an error naming it and what to install.

Anything else raises `ImageDecodeError` naming the file. `read_image_with_info` also returns
an `ImageInfo` saying how the file was read (bit depth used and why, orientation applied).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_EXTENSIONS = (".dcm", ".dicom")
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# the max-value rule for 16-bit PNGs without sBIT (see the module docstring)
_RULE_BITS = (8, 10, 12, 14, 16)
# JPEG start-of-frame markers; lossless processes are 0xC3, 0xC7, 0xCB, 0xCF
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_LOSSLESS_SOF = {0xC3, 0xC7, 0xCB, 0xCF}
# what to install for a DICOM transfer syntax whose decoder plugin is missing
_DICOM_PLUGIN_HINT = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg and pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg and pylibjpeg-openjpeg",
}


class ImageDecodeError(ValueError):
    """An image file is missing, of an unsupported format, or cannot be decoded."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ImageInfo:
    """How an image file was decoded."""

    height: int
    width: int
    format: str  # "png" | "jpeg" | "dicom"
    mode: str  # Pillow mode or DICOM photometric interpretation
    stored_bits: int  # container bits (8, 16, DICOM BitsAllocated)
    significant_bits: int  # bits used for scaling (sBIT / rule / DICOM BitsStored)
    bit_depth_source: str  # "container", "sBIT", "sBIT (samples scaled to 16 bits)", "max-value rule", "DICOM BitsStored"
    exif_orientation: int | None  # the EXIF Orientation tag applied (None / 1 = none)
    transfer_syntax: str | None  # DICOM only: the UID


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


# --- PNG and JPEG headers -------------------------------------------------------------


@dataclass(frozen=True)
class _PngHeader:
    bit_depth: int
    colour_type: int  # 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
    sbit: tuple[int, ...] | None  # significant bits per channel, from sBIT


def _png_header(path: Path) -> _PngHeader:
    """IHDR and sBIT of a PNG, by walking its chunks up to the first IDAT.

    Pillow does not expose sBIT, so the chunk list is read here (length, type, data, CRC).
    A truncated chunk list ends the walk; Pillow reports the damage when decoding.
    """
    with open(path, "rb") as handle:
        handle.seek(len(_PNG_MAGIC))
        ihdr = handle.read(8 + 13)
        if len(ihdr) < 21 or ihdr[4:8] != b"IHDR":
            raise ImageDecodeError(path, "cannot be decoded (PNG without an IHDR chunk)")
        bit_depth, colour_type = ihdr[16], ihdr[17]
        handle.seek(4, os.SEEK_CUR)  # IHDR's CRC
        sbit = None
        while True:
            head = handle.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I", head[:4])[0], head[4:8]
            if kind in (b"IDAT", b"IEND"):
                break  # sBIT must come before the image data
            if kind == b"sBIT":
                sbit = tuple(handle.read(length)) or None
                handle.seek(4, os.SEEK_CUR)
            else:
                handle.seek(length + 4, os.SEEK_CUR)
    return _PngHeader(bit_depth, colour_type, sbit)


def _jpeg_frame(path: Path) -> tuple[int, int]:
    """(start-of-frame marker, sample precision in bits) of a JPEG, by walking its marker segments."""
    with open(path, "rb") as handle:
        handle.seek(2)  # after SOI
        while True:
            byte = handle.read(1)
            if byte != b"\xff":
                break
            marker = handle.read(1)
            while marker == b"\xff":  # fill bytes
                marker = handle.read(1)
            if not marker:
                break
            code = marker[0]
            if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
                continue
            if code == 0xDA:  # start of scan before any frame header
                break
            length = handle.read(2)
            if len(length) < 2:
                break
            if code in _JPEG_SOF:
                precision = handle.read(1)
                if precision:
                    return code, precision[0]
                break
            handle.seek(struct.unpack(">H", length)[0] - 2, os.SEEK_CUR)
    raise ImageDecodeError(path, "cannot be decoded (JPEG without a frame header)")


# --- pixels to grey ---------------------------------------------------------------------


def _pil_to_grey(image: Image.Image, path: Path) -> np.ndarray:
    """Grey float32 in [0, 1] from a decoded 8-bit (or 1-bit) Pillow image of any mode."""
    mode = image.mode
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


def _significant_bits(samples: np.ndarray, sbit: int | None) -> tuple[int, str]:
    """Bits to scale 16-bit samples by, and where that number came from."""
    if sbit is not None and 1 <= sbit <= 16:
        return sbit, "sBIT"
    largest = int(samples.max(initial=0))
    return next(bits for bits in _RULE_BITS if largest < 2**bits), "max-value rule"


def _scale_16bit(samples: np.ndarray, sbit: int | None) -> tuple[np.ndarray, int, str]:
    """16-bit samples (H, W) or (H, W, 3) to [0, 1] by their real bit depth (module docstring)."""
    samples = samples.astype(np.int64)
    bits, source = _significant_bits(samples, sbit)
    if source == "sBIT" and bits < 16 and int(samples.max(initial=0)) >= 2**bits:
        # the PNG specification's case: samples scaled up to 16 bits; shift them back
        samples = samples >> (16 - bits)
        source = "sBIT (samples scaled to 16 bits)"
    grey = samples.astype(np.float32) @ _LUMA if samples.ndim == 3 else samples.astype(np.float32)
    return grey / float(2**bits - 1), bits, source


def _read_16bit_colour_png(path: Path, header: _PngHeader) -> tuple[np.ndarray, int, str]:
    """A 16-bit RGB/RGBA/grey+alpha PNG at full precision (Pillow keeps only the high byte)."""
    import cv2  # opencv-python-headless, installed with grad-cam

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise ImageDecodeError(path, "cannot be decoded (16-bit colour PNG)")
    if array.ndim == 2:
        colour = array
    else:
        colour = array[..., 2::-1] if array.shape[2] >= 3 else array[..., 0]  # BGR(A) -> RGB
    channels = 1 if header.colour_type == 4 else 3
    sbit = max(header.sbit[:channels]) if header.sbit else None
    return _scale_16bit(colour, sbit)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF Orientation tag (1..8) of a Pillow image, or None."""
    value = image.getexif().get(ExifTags.Base.Orientation)
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


def _apply_orientation(grey: np.ndarray, exif: Image.Exif) -> np.ndarray:
    """Rotate/flip a grey array as its EXIF Orientation says, with Pillow's exif_transpose."""
    image = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))  # mode "F"
    image.info["exif"] = exif.tobytes()
    return np.asarray(ImageOps.exif_transpose(image), dtype=np.float32)


def _read_pil(path: Path, kind: str) -> tuple[np.ndarray, ImageInfo]:
    """Decode a PNG or JPEG with Pillow (OpenCV for 16-bit colour PNGs)."""
    header = _png_header(path) if kind == "png" else None
    if kind == "jpeg":
        marker, precision = _jpeg_frame(path)
        if precision != 8 or marker in _JPEG_LOSSLESS_SOF:
            what = "lossless" if marker in _JPEG_LOSSLESS_SOF else f"{precision}-bit"
            raise ImageDecodeError(
                path, f"{what} JPEG is not supported as a plain .jpg file (Pillow decodes 8-bit lossy JPEG only); "
                "such JPEG is supported inside DICOM only: store it as DICOM (JPEG Extended or JPEG Lossless "
                "transfer syntax) or export the image as 16-bit PNG"
            )
    try:
        with Image.open(path) as image:
            image.load()  # decode everything now, so that truncated files fail here
            orientation = _orientation(image)
            exif = image.getexif()
            mode = image.mode
            stored_bits = 8 if kind == "jpeg" or header.colour_type == 3 else header.bit_depth
            bits, source = stored_bits, "container"
            if header is not None and header.bit_depth == 16 and header.colour_type in (2, 4, 6):
                grey, bits, source = _read_16bit_colour_png(path, header)
            elif header is not None and header.bit_depth == 16:
                grey, bits, source = _scale_16bit(np.asarray(image), header.sbit[0] if header.sbit else None)
            else:
                grey = _pil_to_grey(image, path)
    except ImageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many kinds; report them all alike
        raise ImageDecodeError(path, f"cannot be decoded ({type(error).__name__}: {error})") from None
    if orientation not in (None, 1):
        grey = _apply_orientation(grey, exif)
    info = ImageInfo(
        height=int(grey.shape[0]), width=int(grey.shape[1]), format=kind, mode=mode,
        stored_bits=stored_bits, significant_bits=bits, bit_depth_source=source,
        exif_orientation=orientation, transfer_syntax=None,
    )
    return grey, info


# --- DICOM ------------------------------------------------------------------------------


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


def _check_dicom_decoder(ds, path: Path) -> str | None:
    """The transfer syntax UID, after making sure an installed plugin can decode it."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    uid = ds.get("file_meta", {}).get("TransferSyntaxUID")
    if uid is None:
        return None  # pydicom infers the (uncompressed) encoding from the data set itself
    uid = UID(str(uid))
    named = f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise ImageDecodeError(path, f"DICOM transfer syntax {named} is not supported: pydicom has no decoder for it") from None
    if not decoder.is_available:
        hint = _DICOM_PLUGIN_HINT.get(str(uid), "a pydicom pixel data plugin for it")
        missing = "; ".join(decoder.missing_dependencies)
        raise ImageDecodeError(
            path, f"DICOM transfer syntax {named} cannot be decoded: no decoder plugin is installed; "
            f"install {hint} (pip install), or python-gdcm" + (f" [pydicom: {missing}]" if missing else "")
        )
    return str(uid)


def _read_dicom(path: Path) -> tuple[np.ndarray, ImageInfo]:
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
        transfer_syntax = _check_dicom_decoder(ds, path)
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
        bits_allocated = int(ds.get("BitsAllocated", 0) or 0)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    except ImageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds; report them all alike
        raise ImageDecodeError(path, f"cannot be decoded as DICOM ({type(error).__name__}: {error})") from None
    if grey.ndim != 2:
        raise ImageDecodeError(path, f"DICOM pixel data has shape {grey.shape}, expected one grey frame")
    if photometric == "MONOCHROME1":
        grey = 1.0 - grey  # MONOCHROME1: minimum value is white
    info = ImageInfo(
        height=int(grey.shape[0]), width=int(grey.shape[1]), format="dicom", mode=photometric,
        stored_bits=bits_allocated, significant_bits=bits_stored, bit_depth_source="DICOM BitsStored",
        exif_orientation=None, transfer_syntax=transfer_syntax,
    )
    return grey, info


# --- public API ---------------------------------------------------------------------------


def read_image_with_info(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Decode a PNG, JPEG or DICOM file as grey float32 (H, W) in [0, 1], with how it was read."""
    path = Path(path)
    kind = _sniff(path)
    grey, info = _read_dicom(path) if kind == "dicom" else _read_pil(path, kind)
    if grey.ndim != 2 or grey.size == 0:
        raise ImageDecodeError(path, f"decoded to shape {grey.shape}, expected a non-empty 2-D image")
    return np.ascontiguousarray(grey, dtype=np.float32), info


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG, JPEG or DICOM file as a grey float32 (H, W) array in [0, 1]."""
    return read_image_with_info(path)[0]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask image (any format `read_image` reads) as bool (H, W): non-zero = inside."""
    return read_image(path) > 0
