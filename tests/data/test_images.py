"""Decoding every format of the data contract, from files the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medclip_residuals.data.images import ImageDecodeError, image_shape, read_image, read_mask

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def _gradient(shape=(16, 20), top=255, dtype=np.uint8) -> np.ndarray:
    h, w = shape
    return (np.arange(h * w).reshape(h, w) * top // (h * w - 1)).astype(dtype)


def test_8bit_grey_png_is_value_over_255(tmp_path: Path) -> None:
    pixels = _gradient()
    Image.fromarray(pixels).save(tmp_path / "grey.png")
    grey = read_image(tmp_path / "grey.png")
    assert grey.dtype == np.float32 and grey.shape == (16, 20)
    np.testing.assert_allclose(grey, pixels / 255.0, atol=1e-7)
    assert grey.min() == 0.0 and grey.max() == 1.0


def test_16bit_png_keeps_values_above_255(tmp_path: Path) -> None:
    pixels = np.array([[0, 255, 256, 257], [1000, 40000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")  # it really is a 16-bit file
    grey = read_image(tmp_path / "deep.png")
    np.testing.assert_allclose(grey, pixels / 65535.0, rtol=0, atol=1e-7)
    # 256 and 257 stay apart: no reduction to 8 bits on the way
    assert grey[0, 2] < grey[0, 3] and grey[0, 1] < grey[0, 2]
    assert grey[1, 1] == pytest.approx(40000 / 65535, abs=1e-7)


def test_rgb_and_rgba_png_are_luminance_with_alpha_dropped(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (200, 100, 50)
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), expected, atol=1e-6)

    alpha = np.array([[0, 128, 255], [255, 0, 7]], dtype=np.uint8)  # transparent pixels keep their colour
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    with Image.open(tmp_path / "rgba.png") as image:
        assert image.mode == "RGBA"
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), expected, atol=1e-6)


def test_jpeg_grey_and_rgb(tmp_path: Path) -> None:
    pixels = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    Image.fromarray(pixels).save(tmp_path / "grey.jpg", quality=95)
    grey = read_image(tmp_path / "grey.jpg")
    assert grey.shape == (24, 32)
    np.testing.assert_allclose(grey, pixels / 255.0, atol=0.03)  # lossy, but close

    Image.fromarray(np.dstack([pixels] * 3)).save(tmp_path / "colour.jpeg", quality=95)
    np.testing.assert_allclose(read_image(tmp_path / "colour.jpeg"), pixels / 255.0, atol=0.03)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, **elements) -> Path:
    """An uncompressed DX file with 12 bits stored, written by pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# Stored values 0..4000; with slope 2, intercept -1000 the modality values are -1000..7000.
STORED = np.array([[0, 500, 900, 1000], [1050, 1100, 1500, 4000]], dtype=np.uint16)
WINDOW = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 1200, "WindowWidth": 801}


def _expected_window(stored: np.ndarray) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window on the modality values, scaled to [0, 1]."""
    modality = stored.astype(float) * 2 - 1000
    center, width = 1200 - 0.5, 801 - 1
    out = (modality - center) / width + 0.5
    out[modality <= center - width / 2] = 0.0
    out[modality > center + width / 2] = 1.0
    return out


def test_dicom_monochrome2_applies_rescale_then_window(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "m2.dcm", STORED, "MONOCHROME2", **WINDOW)
    grey = read_image(path)
    expected = _expected_window(STORED)
    np.testing.assert_allclose(grey, expected, atol=1e-6)
    # spelled out: stored 1000 -> modality 1000, 199.5 below the centre over a width of 800
    assert grey[0, 3] == pytest.approx(0.5 - 199.5 / 800, abs=1e-6)
    assert grey[0, 0] == 0.0 and grey[1, 3] == 1.0  # saturated ends of the window
    assert image_shape(path) == (2, 4)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "m1.dcm", STORED, "MONOCHROME1", **WINDOW)
    grey = read_image(path)
    np.testing.assert_allclose(grey, 1.0 - _expected_window(STORED), atol=1e-6)
    assert grey[0, 0] == 1.0 and grey[1, 3] == 0.0  # low values are white in MONOCHROME1


def test_dicom_without_window_stretches_its_own_range(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "plain.dcm", STORED, "MONOCHROME2")
    np.testing.assert_allclose(read_image(path), STORED / 4000.0, atol=1e-6)


def test_dicom_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    lut_item = Dataset()
    lut_item.add_new("LUTDescriptor", "US", [4096, 0, 12])
    lut_item.add_new("LUTData", "US", [4095 - v for v in range(4096)])  # an inverting LUT
    path = write_dicom(tmp_path / "lut.dcm", STORED, "MONOCHROME2", VOILUTSequence=[lut_item])
    np.testing.assert_allclose(read_image(path), (4095 - STORED) / 4095.0, atol=1e-6)


def test_dicom_without_preamble_magic_but_dcm_suffix(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "m2.dcm", STORED, "MONOCHROME2")
    assert (tmp_path / "m2.dcm").read_bytes()[128:132] == b"DICM"
    renamed = path.rename(tmp_path / "no_extension")
    assert read_image(renamed).shape == (2, 4)  # recognised by content, not by name


def test_rgb_dicom_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "colour.dcm", STORED, "RGB")
    with pytest.raises(ImageDecodeError, match=r"colour\.dcm.*PhotometricInterpretation 'RGB'"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.png", None, "file not found"),
        ("empty.png", b"", "file is empty"),
        ("notes.txt", b"just some text, long enough to sniff", "unsupported image format"),
        ("broken.png", None, "cannot be decoded"),
        ("broken.dcm", None, "cannot be decoded as DICOM"),
        ("header_only.dcm", b"\0" * 128 + b"DICM" + b"\0" * 40, "PhotometricInterpretation '(missing)'"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path: Path, name: str, content: bytes | None, reason: str) -> None:
    path = tmp_path / name
    if name == "broken.png":
        Image.fromarray(_gradient((64, 64))).save(path)
        path.write_bytes(path.read_bytes()[:60])  # truncated after the header
    elif name == "broken.dcm":
        write_dicom(path, STORED, "MONOCHROME2")
        path.write_bytes(path.read_bytes()[:-6])  # pixel data cut short
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_image_shape_reads_headers_and_read_mask_thresholds_non_zero(tmp_path: Path) -> None:
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3, 2:6] = 1  # non-zero, however faint, is inside
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert image_shape(tmp_path / "mask.png") == (5, 7)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), mask > 0)
