"""Decoding the 11 real chest X-rays of ../shared/real_cxr, checked against independent decodes.

The independent decode of each file is written here with pydicom (``pixel_array``, then this
file's own stretch and MONOCHROME1 inversion) or with Pillow and numpy (luminance by hand);
`read_image` must agree with it everywhere, at a few pixels whose values are written down,
in grey range and shape, and in orientation (not flipped or transposed against it).
"""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from medclip_residuals.data.images import read_image_with_info

REAL_CXR = Path(__file__).resolve().parents[2].parent / "shared" / "real_cxr"
pytestmark = pytest.mark.skipif(
    not (REAL_CXR / "manifest.csv").is_file(), reason=f"real chest X-ray files not present at {REAL_CXR}"
)

# image_id: (shape, format, mode, (min, max), values at POINTS), measured once from the files
EXPECTED = {
    "nih_00000001_000": ((512, 512), "png", "L", (0.0, 1.0), (0.7765, 0.2314, 0.7608, 0.2510)),
    "nih_00027426_000": ((512, 512), "png", "L", (0.0, 0.9451), (0.5765, 0.6196, 0.6980, 0.1843)),
    "rsna_jpeg_dicom": ((1024, 1024), "dicom", "MONOCHROME2", (0.0, 1.0), (0.8157, 0.5569, 0.6157, 0.5098)),
    "padchest_16747_3_1": ((885, 1036), "jpeg", "RGB", (0.0, 0.9765), (0.8314, 0.4510, 0.8039, 0.4627)),
    "rsna_monochrome1": ((1024, 1024), "dicom", "MONOCHROME1", (0.0, 1.0), (0.1843, 0.4431, 0.3843, 0.4902)),
    "covid_pneumonia_58_prior": ((2373, 2373), "jpeg", "RGB", (0.0, 1.0), (0.8078, 0.5765, 0.7686, 0.4902)),
    "tbx11k_h0001": ((512, 512), "png", "RGB", (0.0, 0.9725), (0.8235, 0.6510, 0.7176, 0.4549)),
    "tbx11k_tb0005": ((512, 512), "png", "RGB", (0.0, 0.9765), (0.8471, 0.5412, 0.8039, 0.3412)),
    "actualmed_913094890017_1203801020003": (
        (1972, 2498), "png", "RGBA", (0.0078, 1.0), (0.5686, 0.1255, 0.4000, 0.5137)),
    "actualmed_010134750210_1003000225002": (
        (1538, 2493), "png", "RGB", (0.0, 0.9294), (0.5686, 0.2980, 0.7490, 0.3529)),
    "actualmed_241816485934_1003000225002": (
        (1427, 2459), "png", "RGB", (0.0157, 1.0), (0.6275, 0.2235, 0.3804, 0.5490)),
}
# JPEG decoders may round an IDCT differently (Pillow's or pylibjpeg's libjpeg): one grey level
JPEG_TOLERANCE = 1.5 / 255


def _points(shape: tuple[int, int]) -> list[tuple[int, int]]:
    h, w = shape
    return [(h // 2, w // 2), (h // 4, w // 4), (3 * h // 4, 3 * w // 4), (h // 4, 3 * w // 4)]


@cache
def _rows() -> dict[str, str]:
    with open(REAL_CXR / "manifest.csv", newline="", encoding="utf-8") as handle:
        return {row["image_id"]: row["image_path"] for row in csv.DictReader(handle)}


def _independent(path: Path) -> np.ndarray:
    """The file decoded without medclip_residuals: pydicom or Pillow, then numpy."""
    if path.suffix.lower() == ".dcm":
        ds = pydicom.dcmread(path)
        # these files carry no rescale, window or VOI LUT: the stored range is stretched
        assert all(ds.get(k) is None for k in ("RescaleSlope", "WindowCenter", "VOILUTSequence"))
        raw = ds.pixel_array.astype(np.float64)
        grey = (raw - raw.min()) / (raw.max() - raw.min())
        return 1.0 - grey if ds.PhotometricInterpretation == "MONOCHROME1" else grey
    with Image.open(path) as image:
        assert image.getexif().get(0x0112) in (None, 1)  # no EXIF rotation in these files
        pixels = np.asarray(image).astype(np.float64)
    if pixels.ndim == 2:
        return pixels / 255.0
    return pixels[..., :3] @ np.array([0.299, 0.587, 0.114]) / 255.0  # alpha dropped


def test_manifest_lists_the_eleven_files() -> None:
    assert sorted(_rows()) == sorted(EXPECTED)
    assert all((REAL_CXR / relative).is_file() for relative in _rows().values())


@pytest.mark.parametrize("image_id", sorted(EXPECTED))
def test_real_file_matches_an_independent_decode(image_id: str) -> None:
    shape, kind, mode, (low, high), values = EXPECTED[image_id]
    path = REAL_CXR / _rows()[image_id]
    grey, info = read_image_with_info(path)
    reference = _independent(path)
    tolerance = JPEG_TOLERANCE if kind == "jpeg" or path.suffix == ".dcm" else 1e-6

    assert grey.dtype == np.float32 and grey.shape == reference.shape == shape
    assert (info.format, info.mode, info.height, info.width) == (kind, mode, *shape)
    assert (info.stored_bits, info.significant_bits, info.exif_orientation) == (8, 8, None)
    np.testing.assert_allclose(grey, reference, atol=tolerance)
    found = [float(grey[point]) for point in _points(shape)]
    np.testing.assert_allclose(found, values, atol=max(tolerance, 1e-4))
    assert float(grey.min()) == pytest.approx(low, abs=max(tolerance, 1e-4))
    assert float(grey.max()) == pytest.approx(high, abs=max(tolerance, 1e-4))
    # orientation: far closer to the reference than to any flip or rotation of it
    error = float(np.abs(grey - reference).mean())
    for turned in (reference[::-1], reference[:, ::-1], reference[::-1, ::-1]):
        assert float(np.abs(grey - turned).mean()) > 0.02 > 10 * error
    if shape[0] == shape[1]:
        assert float(np.abs(grey - reference.T).mean()) > 0.02


def test_monochrome1_file_is_the_inverse_of_its_monochrome2_twin() -> None:
    twin, _ = read_image_with_info(REAL_CXR / _rows()["rsna_jpeg_dicom"])
    inverted, info = read_image_with_info(REAL_CXR / _rows()["rsna_monochrome1"])
    assert info.transfer_syntax == "1.2.840.10008.1.2.4.50"  # JPEG baseline inside DICOM
    # the same stored pixels, re-tagged MONOCHROME1: bone must come out dark where it was bright
    np.testing.assert_allclose(inverted, 1.0 - twin, atol=1e-6)
    assert float(twin.mean()) == pytest.approx(0.6291, abs=1e-3)


def test_rgba_file_has_opaque_alpha_and_grey_channels() -> None:
    path = REAL_CXR / _rows()["actualmed_913094890017_1203801020003"]
    with Image.open(path) as image:
        rgba = np.asarray(image)
    assert rgba.shape[2] == 4 and rgba[..., 3].min() == 255
    grey, _ = read_image_with_info(path)
    # grey stored as R = G = B: luminance is that channel exactly
    np.testing.assert_allclose(grey, rgba[..., 0] / 255.0, atol=1e-6)


def test_jpeg_dicom_matches_its_frame_decoded_by_pillow_alone() -> None:
    path = REAL_CXR / _rows()["rsna_jpeg_dicom"]
    frame = next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    with Image.open(io.BytesIO(frame)) as image:
        assert image.mode == "L"
        stored = np.asarray(image).astype(np.float64)
    grey, _ = read_image_with_info(path)
    # the stored range is 0..255 (decoded by pylibjpeg), so the stretch is a division by 255;
    # Pillow's libjpeg rounds its IDCT differently: one level at ~3 % of the pixels
    levels = np.abs(grey.astype(np.float64) * 255 - stored)
    assert float(levels.max()) <= 1.0 + 1e-3 and float(levels.mean()) < 0.05
