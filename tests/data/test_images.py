"""Decoding every format of the data contract, from files the tests write themselves."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from medclip_residuals.data.images import ImageDecodeError, ImageInfo, read_image, read_image_with_info, read_mask

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


def test_multi_frame_dicom_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "cine.dcm", STORED, "MONOCHROME2", NumberOfFrames=2)
    ds = pydicom.dcmread(path)
    ds.PixelData = np.stack([STORED, STORED]).astype("<u2").tobytes()  # two 2 x 4 frames
    ds.save_as(path)
    with pytest.raises(ImageDecodeError, match=r"cine\.dcm.*multi-frame DICOM \(2 frames\) is not supported"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.png", None, "file not found"),
        ("empty.png", b"", "file is empty"),
        ("notes.txt", b"just some text, long enough to sniff", "unsupported image format"),
        ("broken.png", None, "cannot be decoded"),
        ("broken.jpg", None, "cannot be decoded"),
        ("headless.jpg", b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda", "cannot be decoded (JPEG without a frame header)"),
        ("broken.dcm", None, "cannot be decoded as DICOM"),
        ("header_only.dcm", b"\0" * 128 + b"DICM" + b"\0" * 40, "PhotometricInterpretation '(missing)'"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path: Path, name: str, content: bytes | None, reason: str) -> None:
    path = tmp_path / name
    if name == "broken.png":
        Image.fromarray(_gradient((64, 64))).save(path)
        path.write_bytes(path.read_bytes()[:60])  # truncated after the header
    elif name == "broken.jpg":
        Image.fromarray(_gradient((64, 64))).save(path)
        path.write_bytes(path.read_bytes()[:300])  # truncated inside the scan
    elif name == "broken.dcm":
        write_dicom(path, STORED, "MONOCHROME2")
        path.write_bytes(path.read_bytes()[:-6])  # pixel data cut short
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_mask_thresholds_non_zero(tmp_path: Path) -> None:
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3, 2:6] = 1  # non-zero, however faint, is inside
    Image.fromarray(mask).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), mask > 0)


# --- EXIF orientation -----------------------------------------------------------------

ORIENTATION = 0x0112
# what each EXIF orientation asks for, written with numpy (EXIF 2.3, tag 274)
UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),  # stored rotated: turn 90 degrees clockwise to view
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


def _with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_png_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    pixels = _gradient((6, 10))  # not square, so that a transposition shows in the shape
    image = Image.fromarray(pixels)
    image.save(tmp_path / "o.png", exif=_with_orientation(image, orientation))
    grey, info = read_image_with_info(tmp_path / "o.png")
    np.testing.assert_array_equal(grey, UPRIGHT[orientation](pixels) / np.float32(255.0))
    assert info.exif_orientation == orientation
    assert (info.height, info.width) == grey.shape == ((10, 6) if orientation >= 5 else (6, 10))


def test_phone_jpeg_with_orientation_6_comes_out_upright(tmp_path: Path) -> None:
    pixels = np.zeros((24, 40), dtype=np.uint8)
    pixels[:8, :8] = 255  # a bright block at the stored top-left corner
    image = Image.fromarray(pixels)
    image.save(tmp_path / "phone.jpg", quality=100, exif=_with_orientation(image, 6))
    grey, info = read_image_with_info(tmp_path / "phone.jpg")
    with Image.open(tmp_path / "phone.jpg") as stored:
        reference = np.asarray(ImageOps.exif_transpose(stored), dtype=np.float32) / 255.0
        assert stored.size == (40, 24)  # stored sideways
    np.testing.assert_array_equal(grey, reference)
    np.testing.assert_allclose(grey, np.rot90(pixels, -1) / 255.0, atol=0.05)
    assert grey.shape == (40, 24) and info.exif_orientation == 6 and info.format == "jpeg"
    assert grey[2, -3] > 0.9 and grey[2, 2] < 0.1  # turned clockwise: the block is now top-right


# --- 16-bit PNG bit depth ---------------------------------------------------------------


def _png_with_sbit(png: bytes, bits: bytes) -> bytes:
    """The PNG with an sBIT chunk inserted after IHDR (Pillow does not write sBIT)."""
    chunk = struct.pack(">I", len(bits)) + b"sBIT" + bits
    chunk += struct.pack(">I", zlib.crc32(b"sBIT" + bits) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


PICTURE_8 = _gradient((12, 16), top=255).astype(np.uint8)
PICTURE_12 = np.rint(PICTURE_8.astype(np.float64) * 4095 / 255).astype(np.uint16)  # same picture, 12-bit


@pytest.mark.parametrize(
    ("samples", "sbit", "source"),
    [
        (PICTURE_12, None, "max-value rule"),
        (PICTURE_12, 12, "sBIT"),
        (PICTURE_12 << 4, 12, "sBIT (samples scaled to 16 bits)"),  # the PNG specification's way
    ],
)
def test_16bit_png_holding_12bit_data_is_on_the_8bit_scale(tmp_path: Path, samples, sbit, source) -> None:
    Image.fromarray(PICTURE_8).save(tmp_path / "eight.png")
    Image.fromarray(samples).save(tmp_path / "deep.png")
    if sbit is not None:
        (tmp_path / "deep.png").write_bytes(_png_with_sbit((tmp_path / "deep.png").read_bytes(), bytes([sbit])))
    grey, info = read_image_with_info(tmp_path / "deep.png")
    np.testing.assert_allclose(grey, read_image(tmp_path / "eight.png"), atol=0.5 / 4095 + 1e-6)
    assert grey.max() == 1.0  # not 4095 / 65535, 16 times too dark
    assert (info.stored_bits, info.significant_bits, info.bit_depth_source) == (16, 12, source)


@pytest.mark.parametrize(
    ("largest", "bits"), [(255, 8), (256, 10), (1023, 10), (4095, 12), (4096, 14), (16383, 14), (16384, 16)]
)
def test_max_value_rule_picks_the_smallest_of_8_10_12_14_16_bits(tmp_path: Path, largest: int, bits: int) -> None:
    samples = np.array([[0, 1, largest // 2, largest]], dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "deep.png")
    grey, info = read_image_with_info(tmp_path / "deep.png")
    np.testing.assert_allclose(grey, samples / (2**bits - 1), rtol=0, atol=1e-7)
    assert (info.significant_bits, info.bit_depth_source) == (bits, "max-value rule")


def test_true_16bit_png_and_sbit_16_stay_over_65535(tmp_path: Path) -> None:
    samples = np.array([[0, 4095, 30000, 65535]], dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "full.png")
    grey, info = read_image_with_info(tmp_path / "full.png")
    np.testing.assert_allclose(grey, samples / 65535.0, rtol=0, atol=1e-7)
    assert info.significant_bits == 16
    # sBIT is trusted over the values: a dark true 16-bit image is not brightened
    dark = np.array([[0, 100, 4095]], dtype=np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark.png")
    (tmp_path / "dark.png").write_bytes(_png_with_sbit((tmp_path / "dark.png").read_bytes(), bytes([16])))
    grey, info = read_image_with_info(tmp_path / "dark.png")
    np.testing.assert_allclose(grey, dark / 65535.0, rtol=0, atol=1e-7)
    assert (info.significant_bits, info.bit_depth_source) == (16, "sBIT")


def test_16bit_rgb_png_keeps_full_precision_and_its_bit_depth(tmp_path: Path) -> None:
    import cv2

    rgb = np.zeros((2, 3, 3), dtype=np.uint16)
    rgb[0, 0] = (4095, 0, 0)
    rgb[0, 1] = (0, 4095, 0)
    rgb[0, 2] = (100, 100, 100)  # Pillow would keep only the high byte: 0
    rgb[1, :] = (4095, 4095, 4095)
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    with Image.open(tmp_path / "rgb16.png") as image:
        assert image.mode == "RGB" and np.asarray(image)[0, 2, 0] == 0  # what Pillow alone would give
    grey, info = read_image_with_info(tmp_path / "rgb16.png")
    expected = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 4095
    np.testing.assert_allclose(grey, expected, atol=1e-6)
    assert grey[0, 2] == pytest.approx(100 / 4095, abs=1e-6)
    assert (info.stored_bits, info.significant_bits, info.mode) == (16, 12, "RGB")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _raw_png(samples: np.ndarray, colour_type: int, sbit: bytes | None = None) -> bytes:
    """A 16-bit PNG written by hand (filter 0 on every row), for layouts Pillow cannot write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    extra = chunk(b"sBIT", sbit) if sbit else b""
    return _PNG_MAGIC + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16bit_grey_alpha_png_with_sbit_12(tmp_path: Path) -> None:
    grey_alpha = np.zeros((2, 3, 2), dtype=np.uint16)
    grey_alpha[..., 0] = [[0, 100, 2048], [4095, 3000, 1]]
    grey_alpha[..., 1] = 4095  # opaque in 12 bits
    (tmp_path / "la16.png").write_bytes(_raw_png(grey_alpha, 4, sbit=bytes([12, 12])))
    grey, info = read_image_with_info(tmp_path / "la16.png")
    np.testing.assert_allclose(grey, grey_alpha[..., 0] / 4095.0, atol=1e-6)
    assert (info.stored_bits, info.significant_bits, info.bit_depth_source) == (16, 12, "sBIT")


def test_info_of_8bit_png_and_jpeg(tmp_path: Path) -> None:
    Image.fromarray(_gradient()).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([_gradient()] * 3)).save(tmp_path / "colour.jpg")
    assert read_image_with_info(tmp_path / "grey.png")[1] == ImageInfo(
        height=16, width=20, format="png", mode="L", stored_bits=8, significant_bits=8,
        bit_depth_source="container", exif_orientation=None, transfer_syntax=None,
    )
    info = read_image_with_info(tmp_path / "colour.jpg")[1]
    assert (info.format, info.mode, info.stored_bits, info.exif_orientation) == ("jpeg", "RGB", 8, None)


def encode_lossless_jpeg(pixels: np.ndarray, precision: int, predictor: int) -> bytes:
    """Lossless JPEG (ITU T.81 process 14) of one grey frame, predictor 1 (left) or 2 (above).

    No installed library encodes lossless JPEG, so the tests write it: one Huffman table
    with a 5-bit code for each difference category 0..16, point transform 0.
    """
    img = pixels.astype(np.int64)
    pred = np.empty_like(img)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = img[0, :-1]  # first row: left neighbour
    pred[1:, 0] = img[:-1, 0]  # first column: the one above
    pred[1:, 1:] = img[1:, :-1] if predictor == 1 else img[:-1, 1:]
    diff = (img - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff)
    bits = []
    for d in diff.ravel().tolist():
        size = int(abs(d)).bit_length()
        bits.append(format(size, "05b"))
        if 0 < size < 16:  # category 16 (difference 32768) carries no extra bits
            bits.append(format(d if d > 0 else d - 1 + (1 << size), f"0{size}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1-bits
    data = bytearray()
    for i in range(0, len(stream), 8):
        data.append(int(stream[i : i + 8], 2))
        if data[-1] == 0xFF:
            data.append(0)  # byte stuffing
    dht = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sof = struct.pack(">BHHB", precision, *img.shape, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0x00, predictor, 0, 0])

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    return b"\xff\xd8" + segment(0xC4, dht) + segment(0xC3, sof) + segment(0xDA, sos) + bytes(data) + b"\xff\xd9"


# --- JPEG deeper than 8 bits: DICOM only -----------------------------------------------


def _local_testdata(name: str) -> Path:
    """A test file that pydicom ships in its package; never downloaded."""
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"pydicom's test file {name} is not installed locally")
    return Path(found)


def test_12bit_jpeg_file_is_refused_saying_dicom_only(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_local_testdata("JPGExtended.dcm"))  # JPEG Extended, 12 bits stored
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    (tmp_path / "twelve.jpg").write_bytes(frame)
    with pytest.raises(ImageDecodeError, match=r"twelve\.jpg: 12-bit JPEG .*supported inside DICOM only"):
        read_image(tmp_path / "twelve.jpg")
    # the same JPEG inside its DICOM decodes
    grey, info = read_image_with_info(_local_testdata("JPGExtended.dcm"))
    assert grey.shape == (1024, 256) and info.transfer_syntax == "1.2.840.10008.1.2.4.51"


@pytest.mark.parametrize(("precision", "what"), [(16, "lossless"), (12, "lossless"), (8, "lossless")])
def test_lossless_jpeg_file_is_refused_saying_dicom_only(tmp_path: Path, precision: int, what: str) -> None:
    top = 2**precision - 1
    (tmp_path / "ll.jpg").write_bytes(encode_lossless_jpeg(_gradient((4, 5), top=top, dtype=np.uint16), precision, 1))
    with pytest.raises(ImageDecodeError, match=rf"ll\.jpg: {what} JPEG .*supported inside DICOM only"):
        read_image(tmp_path / "ll.jpg")


def test_16bit_lossy_jpeg_header_is_refused(tmp_path: Path) -> None:
    Image.fromarray(_gradient()).save(tmp_path / "deep.jpg")
    data = bytearray((tmp_path / "deep.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 16  # sample precision 16 (a JPEG no 8-bit decoder takes)
    (tmp_path / "deep.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match=r"16-bit JPEG is not supported as a plain \.jpg file"):
        read_image(tmp_path / "deep.jpg")


# --- compressed DICOM --------------------------------------------------------------------

# a 12-bit ramp (0..4006) with a little texture, so that a compressor has something to keep
SMOOTH_12 = _gradient((48, 64), top=4000, dtype=np.uint16) + (np.add.outer(np.arange(48), np.arange(64)) % 7).astype(
    np.uint16
)


def _uncompressed(tmp_path: Path, photometric: str = "MONOCHROME2") -> Path:
    return write_dicom(tmp_path / "plain.dcm", SMOOTH_12, photometric, **WINDOW)


def _compressed(tmp_path: Path, uid: str, **options) -> Path:
    ds = pydicom.dcmread(_uncompressed(tmp_path))
    ds.compress(uid, **options)
    ds.save_as(tmp_path / "compressed.dcm")
    return tmp_path / "compressed.dcm"


def _encapsulated(tmp_path: Path, uid: str, frame: bytes) -> Path:
    ds = pydicom.dcmread(_uncompressed(tmp_path))
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "compressed.dcm")
    return tmp_path / "compressed.dcm"


@pytest.mark.parametrize(
    ("uid", "make"),
    [
        (RLELossless, lambda tmp: _compressed(tmp, RLELossless)),
        (JPEG2000Lossless, lambda tmp: _compressed(tmp, JPEG2000Lossless)),
        (JPEGLossless, lambda tmp: _encapsulated(tmp, JPEGLossless, encode_lossless_jpeg(SMOOTH_12, 12, 2))),
        (JPEGLosslessSV1, lambda tmp: _encapsulated(tmp, JPEGLosslessSV1, encode_lossless_jpeg(SMOOTH_12, 12, 1))),
    ],
)
def test_lossless_compressed_dicom_decodes_to_the_uncompressed_pixels(tmp_path: Path, uid: str, make) -> None:
    path = make(tmp_path)
    assert str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) == uid
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, SMOOTH_12)
    grey, info = read_image_with_info(path)
    np.testing.assert_array_equal(grey, read_image(tmp_path / "plain.dcm"))
    np.testing.assert_allclose(grey, _expected_window(SMOOTH_12), atol=1e-6)
    assert info.transfer_syntax == uid and (info.stored_bits, info.significant_bits) == (16, 12)


def test_lossy_jpeg_2000_dicom_decodes_close_to_the_original(tmp_path: Path) -> None:
    path = _compressed(tmp_path, JPEG2000, j2k_psnr=[80])
    grey, info = read_image_with_info(path)
    assert info.transfer_syntax == JPEG2000 == "1.2.840.10008.1.2.4.91"
    np.testing.assert_allclose(grey, _expected_window(SMOOTH_12), atol=4 * 2 / 800)  # a few stored units


def test_jpeg_ls_lossless_dicom_equals_its_uncompressed_twin() -> None:
    compressed, plain = _local_testdata("MR_small_jpeg_ls_lossless.dcm"), _local_testdata("MR_small.dcm")
    grey, info = read_image_with_info(compressed)
    assert info.transfer_syntax == JPEGLSLossless == "1.2.840.10008.1.2.4.80"
    np.testing.assert_array_equal(grey, read_image(plain))
    assert grey.shape == (64, 64) and grey.std() > 0.1


def test_jpeg_ls_near_lossless_dicom_matches_libjpeg_directly() -> None:
    import libjpeg

    path = _local_testdata("JPEGLSNearLossless_16.dcm")
    ds = pydicom.dcmread(path)
    direct = libjpeg.decode(next(generate_frames(ds.PixelData, number_of_frames=1))).astype(np.float64)
    grey, info = read_image_with_info(path)
    assert info.transfer_syntax == JPEGLSNearLossless == "1.2.840.10008.1.2.4.81"
    np.testing.assert_allclose(grey, (direct - direct.min()) / (direct.max() - direct.min()), atol=1e-6)


def test_rle_monochrome1_is_inverted_too(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_uncompressed(tmp_path, "MONOCHROME1"))
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "m1_rle.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "m1_rle.dcm"), 1.0 - _expected_window(SMOOTH_12), atol=1e-6)


def test_transfer_syntax_without_a_decoder_is_named(tmp_path: Path) -> None:
    path = _encapsulated(tmp_path, "1.2.840.10008.1.2.4.100", b"\0\0\0\1")  # MPEG2: pydicom has no decoder
    with pytest.raises(ImageDecodeError, match=r"compressed\.dcm: DICOM transfer syntax MPEG2 .*\(1\.2\.840\.10008\.1\.2\.4\.100\) is not supported"):
        read_image(path)


def test_missing_decoder_plugin_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import Decoder

    path = _encapsulated(tmp_path, JPEGLosslessSV1, encode_lossless_jpeg(SMOOTH_12, 12, 1))
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))  # as if pylibjpeg were absent
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "(1.2.840.10008.1.2.4.70)" in message and "JPEG Lossless" in message
    assert "install pylibjpeg and pylibjpeg-libjpeg" in message
