"""Rendering of one procedural frontal (PA) chest radiograph and its finding masks.

Everything is drawn in *canonical* coordinates (u to the image's right, v downwards, both
about [0, 1], midline u = 0.5) and mapped to pixels through the study's pose (zoom, shift,
small rotation), so that one patient looks the same in every study and at any image size.
The image is a sum of attenuation terms (soft tissue, air in the lungs and airways, bone,
vessels, findings) pushed through a film-like characteristic curve, then blurred,
edge-enhanced and given noise, as a processed digital radiograph is.

Radiological orientation: the patient's right is on the image's left. `dx` below is the
distance from the midline towards one side's lateral wall: `u = 0.5 - dx` on the patient's
right, `u = 0.5 + dx` on the patient's left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage

SIDES = ("right", "left")  # the patient's sides; index 0 is drawn on the image's left
_SIGN = {"right": -1.0, "left": 1.0}
F32 = np.float32
# density of a full lung's air (relative to the chest's soft tissue), and of vessels per
# unit of canonical diameter, exaggerated a little so that the texture survives 128 px
_LUNG_AIR = 0.62
_VESSEL_GAIN = 7.0


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class VesselTree:
    """Branches of one lung's pulmonary vessels, in canonical (dx, v), one array per field."""

    x0: np.ndarray
    v0: np.ndarray
    x1: np.ndarray
    v1: np.ndarray
    width: np.ndarray
    generation: np.ndarray


@dataclass(frozen=True)
class Anatomy:
    """A patient's anatomy in canonical units (image width = 1 at zoom 1).

    Per-side tuples are (right, left), the patient's sides.
    """

    zoom: float
    neck_w: float
    shoulder_v: float
    chest_w: float
    apex_v: tuple[float, float]
    apex_dx: float
    lateral: tuple[float, float]
    cp_v: tuple[float, float]
    dome_h: tuple[float, float]
    dome_dx: float
    med_w: float
    knob_amp: float
    ra_amp: float
    lv_amp: float
    lv_center: float
    heart_top: float
    trachea_shift: float
    carina_v: float
    clavicle_v: tuple[float, float]
    rib_v0: np.ndarray
    rib_half: np.ndarray
    rib_slope: float
    rib_drop: float
    ant_rib_v0: np.ndarray
    spine_w: float
    vertebra_period: float
    vertebra_phase: float
    gastric_bubble: tuple[float, float, float] | None  # (dx, half width, half height)
    breast: float  # 0: none; else the density of each breast shadow
    vessels: tuple[VesselTree, VesselTree]


@dataclass(frozen=True)
class Pose:
    """Where a study puts the patient on the detector, the breath, and the exposure."""

    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    inspiration: float = 0.0  # positive lowers the diaphragm (a deeper breath)
    film_center: float = 0.78
    film_width: float = 0.30
    gamma: float = 1.0
    fog: float = 0.02
    noise: float = 0.015
    blur_px: float = 0.6  # at 256 px; scaled with the image size
    sharpen: float = 0.5


@dataclass(frozen=True)
class FindingSpec:
    """One finding of a study: what, where (patient's side, lung zone) and its shape.

    `shape` holds numbers drawn when the study was planned (fractions of the lung's extent,
    sizes, amplitudes), so that rendering is a pure function of the spec and a generator.
    """

    name: str
    side: str  # "right" | "left" | "bilateral" | ""
    zone: str  # "upper" | "middle" | "lower" | "heart"
    uncertain: bool = False
    shape: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """One rendered study: the 8-bit image, a boolean mask per finding, lungs and heart."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    lungs: dict[str, np.ndarray]
    heart: np.ndarray


# ----------------------------------------------------------------------------- sampling


def _vessel_tree(rng: np.random.Generator, hilum_dx: float, hilum_v: float, generations: int) -> VesselTree:
    """Grow a branching tree from the hilum: each branch forks into two thinner, shorter ones."""
    trunk_deg = np.array([-110.0, -82.0, -55.0, -25.0, 5.0, 35.0, 62.0, 90.0])
    n = trunk_deg.size
    angle = np.deg2rad(trunk_deg + rng.normal(0.0, 6.0, n))
    # trunks to the apex and the base have further to go
    length = rng.uniform(0.05, 0.068, n) * (1.0 + 0.45 * np.abs(np.sin(angle)))
    width = rng.uniform(0.012, 0.016, n)
    x = hilum_dx + rng.uniform(0.0, 0.015, n)
    v = hilum_v + rng.uniform(-0.015, 0.015, n) + 0.035 * np.sin(angle)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x0", "v0", "x1", "v1", "width", "generation")}
    for gen in range(generations):
        x1 = x + length * np.cos(angle)
        v1 = v + length * np.sin(angle)
        for key, value in (("x0", x), ("v0", v), ("x1", x1), ("v1", v1), ("width", width)):
            parts[key].append(value)
        parts["generation"].append(np.full(x.size, gen))
        m = x.size
        spread = np.deg2rad(rng.uniform(14.0, 32.0, (m, 2)) * np.array([-1.0, 1.0]))
        angle = (angle[:, None] + spread + rng.normal(0.0, 0.07, (m, 2))).ravel()
        angle = np.clip(angle, np.deg2rad(-130.0), np.deg2rad(120.0))  # away from the mediastinum
        x, v = np.repeat(x1, 2), np.repeat(v1, 2)
        length = np.repeat(length, 2) * rng.uniform(0.68, 0.85, 2 * m)
        width = np.repeat(width, 2) * rng.uniform(0.64, 0.74, 2 * m)
    return VesselTree(**{k: np.concatenate(val) for k, val in parts.items()})


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy (size, lung shape, heart, bones, vessels)."""
    apex_r = rng.uniform(0.10, 0.14)
    cp_r = rng.uniform(0.72, 0.78)
    lateral_r = rng.uniform(0.32, 0.36)
    n_ribs = 12
    rib_gap = rng.uniform(0.050, 0.057) * (1.0 + 0.04 * np.arange(n_ribs))
    rib_v0 = rng.uniform(0.075, 0.10) + np.concatenate([[0.0], np.cumsum(rib_gap[:-1])])
    ant_gap = rng.uniform(0.062, 0.07) * (1.0 + 0.03 * np.arange(8))
    ant_v0 = rng.uniform(0.02, 0.05) + np.concatenate([[0.0], np.cumsum(ant_gap[:-1])])
    bubble = None
    if rng.random() < 0.75:
        bubble = (rng.uniform(0.12, 0.2), rng.uniform(0.035, 0.06), rng.uniform(0.018, 0.03))
    med_w = rng.uniform(0.046, 0.056)
    ra_amp = rng.uniform(0.040, 0.058)
    hila = (med_w + 0.02, med_w + 0.02)
    return Anatomy(
        zoom=rng.uniform(0.88, 1.0),
        neck_w=rng.uniform(0.075, 0.095),
        shoulder_v=rng.uniform(0.10, 0.14),
        chest_w=rng.uniform(0.41, 0.45),
        apex_v=(apex_r, apex_r + rng.uniform(-0.012, 0.012)),
        apex_dx=rng.uniform(0.11, 0.14),
        lateral=(lateral_r, lateral_r - rng.uniform(0.0, 0.02)),
        cp_v=(cp_r, cp_r + rng.uniform(0.01, 0.035)),
        dome_h=(rng.uniform(0.07, 0.10), rng.uniform(0.06, 0.09)),
        dome_dx=rng.uniform(0.15, 0.20),
        med_w=med_w,
        knob_amp=rng.uniform(0.028, 0.045),
        ra_amp=ra_amp,
        lv_amp=rng.uniform(0.105, 0.14),
        lv_center=rng.uniform(0.61, 0.65),
        heart_top=rng.uniform(0.45, 0.49),
        trachea_shift=rng.uniform(-0.012, 0.002),
        carina_v=rng.uniform(0.32, 0.36),
        clavicle_v=(rng.uniform(0.17, 0.2), rng.uniform(0.17, 0.2)),
        rib_v0=rib_v0,
        rib_half=rng.uniform(0.010, 0.0125) * (1.0 + 0.02 * np.arange(n_ribs)),
        rib_slope=rng.uniform(0.15, 0.25),
        rib_drop=rng.uniform(0.10, 0.15),
        ant_rib_v0=ant_v0,
        spine_w=rng.uniform(0.028, 0.034),
        vertebra_period=rng.uniform(0.047, 0.055),
        vertebra_phase=rng.uniform(0.0, 1.0),
        gastric_bubble=bubble,
        breast=rng.uniform(0.05, 0.10) if rng.random() < 0.45 else 0.0,
        vessels=(
            _vessel_tree(rng, hila[0], rng.uniform(0.43, 0.47), 6),
            _vessel_tree(rng, hila[1], rng.uniform(0.40, 0.44), 6),
        ),
    )


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw one study's positioning, inspiration and exposure."""
    return Pose(
        zoom=rng.uniform(0.97, 1.03),
        shift=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        rotation_deg=rng.uniform(-3.0, 3.0),
        inspiration=rng.uniform(-0.025, 0.025),
        film_center=rng.uniform(0.72, 0.84),
        film_width=rng.uniform(0.26, 0.33),
        gamma=rng.uniform(0.85, 1.15),
        fog=rng.uniform(0.0, 0.05),
        noise=rng.uniform(0.008, 0.022),
        blur_px=rng.uniform(0.4, 0.8),
        sharpen=rng.uniform(0.4, 0.9),
    )


# ----------------------------------------------------------------------------- helpers


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = _clip01((x - F32(e0)) * F32(1.0 / (e1 - e0)))
    return t * t * (F32(3.0) - F32(2.0) * t)


def _soft(distance: np.ndarray, eps: float) -> np.ndarray:
    """Signed distance (positive inside) to a coverage in [0, 1] with an edge `eps` wide."""
    return _clip01(distance * F32(1.0 / eps) + F32(0.5))


class _Lut:
    """A 1-D function tabulated once and looked up per pixel, cheaper than evaluating it
    per pixel."""

    def __init__(self, fn, lo: float, hi: float, n: int = 4096):
        self.lo, self.scale, self.n = lo, (n - 1) / (hi - lo), n
        self.table = np.asarray(fn(np.linspace(lo, hi, n)), dtype=F32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        idx = np.clip(np.rint((x - F32(self.lo)) * F32(self.scale)), 0, self.n - 1).astype(np.int32)
        return self.table[idx]


def _noise(rng: np.random.Generator, shape: int | tuple[int, int], sigma_px: float) -> np.ndarray:
    """Smooth random field with unit standard deviation; coarse fields are drawn small."""
    h, w = (shape, shape) if isinstance(shape, int) else shape
    factor = max(1, int(sigma_px // 2))
    small = (max(1, -(-h // factor)), max(1, -(-w // factor)))
    field_ = ndimage.gaussian_filter(rng.standard_normal(small, dtype=F32), sigma_px / factor, mode="wrap")
    if factor > 1:
        field_ = ndimage.zoom(field_, factor, order=1, mode="grid-wrap", grid_mode=True)[:h, :w]
    return field_ * F32(1.0 / (field_.std() + 1e-6))


def _bone_band(s: np.ndarray) -> np.ndarray:
    """Cross-section of a tubular bone at offset s (in half-widths): medulla, brighter cortex."""
    a = np.abs(s)
    body = _smoothstep(1.15, 0.85, a)
    cortex = np.exp(-np.square((a - F32(0.85)) * F32(5.0)))
    return F32(0.5) * body + F32(0.5) * cortex


def _hump(v: np.ndarray, center: float, up: float, down: float) -> np.ndarray:
    return np.exp(-(((v - center) / np.where(v < center, up, down)) ** 2))


# ----------------------------------------------------------------------------- geometry


class Geometry:
    """A study's anatomy (after breath and findings such as cardiomegaly) on its pixel grid."""

    def __init__(self, anatomy: Anatomy, pose: Pose, size: int, findings: tuple[FindingSpec, ...] = ()):
        self.anatomy, self.pose, self.size = anatomy, pose, size
        self.total_zoom = anatomy.zoom * pose.zoom
        self.px = 1.0 / (size * self.total_zoom)  # one pixel in canonical units
        coords = ((np.arange(size, dtype=np.float64) + 0.5) / size).astype(F32)
        x_img, y_img = np.meshgrid(coords, coords)
        theta = np.deg2rad(pose.rotation_deg)
        self._cos, self._sin = np.cos(theta), np.sin(theta)
        px_ = x_img - F32(0.5 + pose.shift[0])
        py_ = y_img - F32(0.5 + pose.shift[1])
        inv = 1.0 / self.total_zoom
        self.u = F32(0.5) + F32(self._cos * inv) * px_ + F32(self._sin * inv) * py_
        self.v = F32(0.5) - F32(self._sin * inv) * px_ + F32(self._cos * inv) * py_
        self.dxs = self.u - F32(0.5)  # signed: + towards the image's right (patient's left)
        self.adx = np.abs(self.dxs)

        a = anatomy
        lift = [0.0, 0.0]  # volume loss lifts the hemidiaphragm on the side of an atelectasis
        self.ra_amp, self.lv_amp, self.lv_center = a.ra_amp, a.lv_amp, a.lv_center
        for f in findings:
            if f.name == "Atelectasis" and f.side in SIDES:
                lift[SIDES.index(f.side)] = f.shape.get("lift", 0.0)
            if f.name == "Cardiomegaly":
                self.ra_amp *= f.shape.get("ra_scale", 1.7)
                self.lv_amp *= f.shape.get("lv_scale", 1.5)
                self.lv_center += 0.02
        self.cp_v = tuple(a.cp_v[i] + pose.inspiration - lift[i] for i in range(2))
        self.dome_top = tuple(self.cp_v[i] - a.dome_h[i] for i in range(2))

        lo, hi = -0.6, 1.6
        self._med = {s: _Lut(lambda v, s=s: self.mediastinum(s, v), lo, hi) for s in SIDES}
        self._lat = [_Lut(lambda v, i=i: self.lateral(i, v), lo, hi) for i in range(2)]
        self._dome = [_Lut(lambda d, i=i: self.dome(i, d), -0.8, 0.8) for i in range(2)]
        self._top = [_Lut(lambda d, i=i: self.apex_top(i, d), -0.8, 0.8) for i in range(2)]
        self._cache: dict = {}

    # -- 1-D profiles (numpy in, numpy out) --------------------------------------------------
    def mediastinum(self, side: str, v: np.ndarray) -> np.ndarray:
        """Half-width of the cardiomediastinal silhouette towards `side` at height v."""
        a = self.anatomy
        v = np.asarray(v, dtype=np.float64)
        base = a.med_w + 0.015 * np.clip((v - 0.12) / 0.2, 0, 1)
        if side == "right":
            return base + 0.008 * np.clip((v - 0.2) / 0.18, 0, 1) + self.ra_amp * _hump(v, 0.60, 0.085, 0.16)
        return (
            base
            + a.knob_amp * np.exp(-(((v - 0.30) / 0.028) ** 2))
            + 0.018 * np.exp(-(((v - 0.385) / 0.03) ** 2))
            + self.lv_amp * _hump(v, self.lv_center, 0.10, 0.22)
        )

    def lateral(self, i: int, v: np.ndarray) -> np.ndarray:
        """Distance from the midline of lung i's lateral border at height v (-1 above it)."""
        a = self.anatomy
        t = (np.asarray(v, dtype=np.float64) - a.apex_v[i]) / (self.cp_v[i] - a.apex_v[i])
        grow = np.sqrt(np.clip(1.0 - (1.0 - np.clip(t, 0.0, 1.0)) ** 2.4, 0.0, 1.0))
        return np.where(t < 0.0, -1.0, a.apex_dx + (a.lateral[i] - a.apex_dx) * grow)

    def dome(self, i: int, dx: np.ndarray) -> np.ndarray:
        """Height of hemidiaphragm i at distance dx from the midline."""
        a = self.anatomy
        top, h, peak = self.dome_top[i], a.dome_h[i], a.dome_dx
        dx = np.asarray(dx, dtype=np.float64)
        lat = np.clip((dx - peak) / (a.lateral[i] - peak), 0.0, 1.3)
        med = np.clip((peak - dx) / peak, 0.0, 1.0)
        return top + h * lat**2.3 + 0.55 * h * med**2

    def apex_top(self, i: int, dx: np.ndarray) -> np.ndarray:
        a = self.anatomy
        return a.apex_v[i] + 5.0 * np.clip(a.apex_dx - np.asarray(dx, dtype=np.float64), 0.0, None) ** 2

    def lung_extent(self, i: int) -> tuple[float, float]:
        """Top (apex) and bottom (costophrenic angle) of lung i in canonical v."""
        return self.anatomy.apex_v[i], self.cp_v[i]

    def point(self, side: str, t: float, f: float) -> tuple[float, float]:
        """Canonical (dx, v) at height fraction t of the lung and fraction f across it."""
        i = SIDES.index(side)
        top, bottom = self.lung_extent(i)
        v = top + t * (bottom - top)
        med = float(self.mediastinum(side, v))
        lat = float(self.lateral(i, v))
        return med + f * max(lat - med, 0.02), v

    # -- 2-D fields (cached per study) -----------------------------------------------------
    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def side_dx(self, side: str) -> np.ndarray:
        return self.dxs if side == "left" else -self.dxs

    def med_at(self, side: str) -> np.ndarray:
        return self._cached(("med", side), lambda: self._med[side](self.v))

    def lat_at(self, side: str) -> np.ndarray:
        i = SIDES.index(side)
        return self._cached(("lat", side), lambda: self._lat[i](self.v))

    def dome_at(self, side: str) -> np.ndarray:
        i = SIDES.index(side)
        return self._cached(("dome", side), lambda: self._dome[i](self.side_dx(side)))

    def outer_distance(self, side: str) -> np.ndarray:
        """Distance inwards from the lateral chest wall and the apex (not the mediastinum)."""
        i = SIDES.index(side)
        return self._cached(
            ("outer", side),
            lambda: np.minimum(self.lat_at(side) - self.side_dx(side), self.v - self._top[i](self.side_dx(side))),
        )

    def envelope_distance(self, side: str) -> np.ndarray:
        """Signed distance to the lung's outline ignoring the mediastinum (positive inside)."""
        return self._cached(("env", side), lambda: np.minimum(self.outer_distance(side), self.dome_at(side) - self.v))

    def lung_distance(self, side: str) -> np.ndarray:
        """Signed distance to the visible lung `side` (positive inside)."""
        return self._cached(
            ("lung", side),
            lambda: np.minimum(self.envelope_distance(side), self.side_dx(side) - self.med_at(side)),
        )

    def heart_distance(self) -> np.ndarray:
        def make():
            right = self.med_at("right") + self.dxs
            left = self.med_at("left") - self.dxs
            bottom = np.where(self.dxs < 0, self.dome_at("right"), self.dome_at("left")) + F32(0.01) - self.v
            return np.minimum(np.minimum(right, left), np.minimum(bottom, self.v - F32(self.anatomy.heart_top)))

        return self._cached("heart", make)

    def lung_fraction(self, side: str) -> np.ndarray:
        """Height within lung `side`: 0 at the apex, 1 at the costophrenic angle."""
        top, bottom = self.lung_extent(SIDES.index(side))
        return (self.v - F32(top)) * F32(1.0 / (bottom - top))

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (u, v) to pixel (column, row) coordinates."""
        cu, cv = (u - 0.5) * self.total_zoom, (v - 0.5) * self.total_zoom
        col = (0.5 + self.pose.shift[0] + self._cos * cu - self._sin * cv) * self.size
        row = (0.5 + self.pose.shift[1] + self._sin * cu + self._cos * cv) * self.size
        return col, row


class Region:
    """A rectangle of the pixel grid, with the canonical coordinates of its pixels."""

    def __init__(self, geo: Geometry, rows: slice, cols: slice):
        self.geo, self.rows, self.cols = geo, rows, cols
        self.sl = (rows, cols)
        self.v, self.dxs, self.adx = geo.v[self.sl], geo.dxs[self.sl], geo.adx[self.sl]
        self.shape = self.v.shape
        self.empty = self.v.size == 0

    def side_dx(self, side: str) -> np.ndarray:
        return self.dxs if side == "left" else -self.dxs

    def take(self, full: np.ndarray) -> np.ndarray:
        return full[self.sl]

    def full(self, part: np.ndarray, fill: float | bool = 0.0) -> np.ndarray:
        """A full-size array holding `part` in this region and `fill` elsewhere."""
        out = np.full((self.geo.size, self.geo.size), fill, dtype=part.dtype)
        out[self.sl] = part
        return out


def region(geo: Geometry, u0: float, u1: float, v0: float, v1: float) -> Region:
    """The smallest pixel rectangle holding the canonical rectangle [u0, u1] x [v0, v1]."""
    cu = np.array([u0, u1, u0, u1])
    cv = np.array([v0, v0, v1, v1])
    col, row = geo.to_pixels(cu, cv)
    n = geo.size
    c0, c1 = int(np.clip(np.floor(col.min()) - 1, 0, n)), int(np.clip(np.ceil(col.max()) + 1, 0, n))
    r0, r1 = int(np.clip(np.floor(row.min()) - 1, 0, n)), int(np.clip(np.ceil(row.max()) + 1, 0, n))
    return Region(geo, slice(r0, r1), slice(c0, c1))


# ----------------------------------------------------------------------------- rendering


def _rasterize(trees: tuple[VesselTree, VesselTree], geo: Geometry, layers: int = 3) -> list[np.ndarray]:
    """Draw both lungs' vessel trees as blurred lines, thick branches blurred more.

    Each line deposits its cross-section (diameter squared) per unit length; blurred with a
    sigma of about half the diameter, the peak is about the diameter (canonical units).
    """
    n = geo.size
    out = []
    n_gen = int(max(t.generation.max() for t in trees)) + 1
    for gens in np.array_split(np.arange(n_gen), layers):
        flat_all, weight_all, widths = [], [], []
        for side, tree in zip(SIDES, trees):
            sel = np.isin(tree.generation, gens)
            x0, v0, x1, v1, w = (a[sel] for a in (tree.x0, tree.v0, tree.x1, tree.v1, tree.width))
            seg_len = np.hypot(x1 - x0, v1 - v0)
            steps = max(2, int(np.ceil(seg_len.max() * n * geo.total_zoom * 1.5)))
            t = np.linspace(0.0, 1.0, steps)
            dx = x0[:, None] + (x1 - x0)[:, None] * t
            vv = v0[:, None] + (v1 - v0)[:, None] * t
            col, row = geo.to_pixels(0.5 + _SIGN[side] * dx, vv)
            weight = np.broadcast_to((w**2 * seg_len / steps)[:, None], col.shape)
            inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)
            flat_all.append(row[inside].astype(np.int64) * n + col[inside].astype(np.int64))
            weight_all.append(weight[inside])
            widths.append(w)
        img = np.bincount(np.concatenate(flat_all), weights=np.concatenate(weight_all), minlength=n * n)
        sigma = max(0.5, 0.45 * float(np.mean(np.concatenate(widths))) * n * geo.total_zoom)
        out.append(ndimage.gaussian_filter(img.reshape(n, n).astype(F32), sigma) * F32((n * geo.total_zoom) ** 2))
    return out


@dataclass(frozen=True)
class _LungFields:
    """Per-pixel fields of a study's lungs that the findings draw on."""

    soft: dict[str, np.ndarray]  # each visible lung's coverage, with a soft edge
    hard: dict[str, np.ndarray]  # each visible lung, boolean
    air: np.ndarray  # the air's thickness, which airspace findings replace
    bronchi: np.ndarray  # the finer vessel layers, standing for the bronchi (air bronchograms)


class _FindingLayer(NamedTuple):
    """What one finding adds, over its region only: density, its mask, and the fraction of the
    vessels that stay visible through it."""

    region: Region
    added: np.ndarray
    mask: np.ndarray
    vessel_keep: np.ndarray


def render_study(
    anatomy: Anatomy, pose: Pose, findings: tuple[FindingSpec, ...], size: int, rng: np.random.Generator
) -> Rendered:
    """Render one study: the 8-bit image, a mask per finding, and the lung and heart masks."""
    geo = Geometry(anatomy, pose, size, findings)
    eps = 1.2 * geo.px
    density = _body(geo, eps, rng)
    heart_d = geo.heart_distance()
    heart_soft = _soft(heart_d, 2.5 * eps)
    density += F32(0.3) * heart_soft
    lung_soft, lung_hard, air, abdomen = _lungs(geo, eps, heart_soft)
    visible_lung = _clip01(air)
    # liver and abdomen under the domes, within the rib cage
    density += F32(0.25) * abdomen * _soft(F32(max(anatomy.lateral)) + F32(0.03) - geo.adx, 0.04)

    # pulmonary vessels, denser towards the hila
    layers = _rasterize(anatomy.vessels, geo)
    vessels = F32(1.3) * layers[0] + layers[1] + layers[2]
    texture = _noise(rng, size, max(0.7, 0.005 * (size * geo.total_zoom)))
    lungs = _LungFields(lung_soft, lung_hard, air, layers[1] + layers[2])
    masks, vessel_keep = _draw_findings(findings, geo, lungs, density, rng)

    density -= F32(_LUNG_AIR) * air
    density += (F32(_VESSEL_GAIN) * vessels + F32(0.02) * texture) * visible_lung * vessel_keep
    _airway(geo, density)
    _gastric_bubble(geo, density)
    _breasts(geo, density)
    _bones(geo, density, heart_soft)
    return Rendered(image=_expose(density, pose, rng, size), masks=masks, lungs=lung_hard, heart=heart_d > 0)


def _body(geo: Geometry, eps: float, rng: np.random.Generator) -> np.ndarray:
    """Density of the soft tissue of neck, shoulders and chest, thick until close to the skin."""
    a = geo.anatomy
    sv = a.shoulder_v
    body_lut = _Lut(
        lambda vv: np.interp(
            vv,
            [-0.6, sv - 0.16, sv - 0.1, sv - 0.04, sv + 0.03, sv + 0.12, 0.46, 1.6],
            [a.neck_w, a.neck_w, a.neck_w + 0.03, 0.25, 0.44, 0.56, a.chest_w, a.chest_w + 0.06],
        ),
        -0.6,
        1.6,
    )
    body_w = body_lut(geo.v)
    inside_body = _soft(body_w - geo.adx, 2 * eps)
    density = np.sqrt(_clip01(F32(1.0) - (geo.adx / body_w) ** 4)) * inside_body
    density *= F32(1.0) + F32(0.04) * _noise(rng, geo.size, 0.05 * (geo.size * geo.total_zoom))
    return density


def _lungs(
    geo: Geometry, eps: float, heart_soft: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Each lung's soft and hard coverage, the air (thickest in the middle of each lung, thin at
    the edges and the apex, partly seen behind the heart and in the posterior recesses), and the
    abdomen under the domes."""
    v = geo.v
    lung_soft: dict[str, np.ndarray] = {}
    lung_hard: dict[str, np.ndarray] = {}
    air = np.zeros_like(v)
    abdomen = np.zeros_like(v)
    for side in SIDES:
        d = geo.lung_distance(side)
        lung_soft[side] = _soft(d, eps)
        lung_hard[side] = d > 0
        dx = geo.side_dx(side)
        med, lat, dome = geo.med_at(side), geo.lat_at(side), geo.dome_at(side)
        frac = _clip01((dx - med) / np.maximum(lat - med, F32(1e-3)))
        t = _clip01(geo.lung_fraction(side))
        edge = np.sqrt(_clip01(d * F32(1.0 / 0.03)))
        thickness = (F32(0.8) + F32(0.2) * np.sin(F32(np.pi) * frac)) * (F32(0.7) + F32(0.3) * _smoothstep(0.0, 0.35, t))
        air += lung_soft[side] * thickness * (F32(0.55) + F32(0.45) * edge)
        # lung behind the heart and in the posterior costophrenic recess, partly seen
        behind = _soft(geo.envelope_distance(side), eps) * _smoothstep(0.02, 0.07, dx) * (F32(1.0) - lung_soft[side])
        air += F32(0.3) * behind * heart_soft
        below = v - dome
        recess = _soft(lat - dx, eps) * np.exp(-np.maximum(below, F32(0.0)) * F32(1 / 0.025)) * (below > 0)
        air += F32(0.25) * recess * _smoothstep(0.06, 0.16, dx)
        abdomen += _soft(below, 3 * eps) * (dx >= 0)
    return lung_soft, lung_hard, air, abdomen


def _draw_findings(
    findings: tuple[FindingSpec, ...], geo: Geometry, lungs: _LungFields, density: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Add each finding's density to `density`, in order; return the masks by finding and the
    fraction of the vessels left visible."""
    masks: dict[str, np.ndarray] = {}
    vessel_keep = np.ones_like(geo.v)
    for finding in findings:
        layer = _render_finding(finding, geo, lungs, rng)
        density[layer.region.sl] += layer.added
        vessel_keep[layer.region.sl] *= layer.vessel_keep
        masks[finding.name] = layer.region.full(layer.mask, False)
    return masks, vessel_keep


def _gastric_bubble(geo: Geometry, density: np.ndarray) -> None:
    """Subtract the stomach's gas under the left hemidiaphragm, when the patient shows one."""
    if geo.anatomy.gastric_bubble is None:
        return
    bx, bw, bh = geo.anatomy.gastric_bubble
    bv = float(geo.dome(1, bx)) + 0.012 + bh
    reg = region(geo, 0.5 + bx - bw, 0.5 + bx + bw, bv - bh, bv + bh)
    if not reg.empty:
        e = ((reg.dxs - F32(bx)) / F32(bw)) ** 2 + ((reg.v - F32(bv)) / F32(bh)) ** 2
        density[reg.sl] -= F32(0.25) * _soft(F32(1.0) - e, 0.2) * (reg.v < F32(bv + 0.5 * bh))


def _breasts(geo: Geometry, density: np.ndarray) -> None:
    """Add the breast shadows over the lower zones, when the patient has them."""
    if not geo.anatomy.breast > 0:
        return
    reg = region(geo, 0.05, 0.95, 0.5, 0.8)
    for side in SIDES:
        e = ((reg.side_dx(side) - F32(0.26)) / F32(0.17)) ** 2 + ((reg.v - F32(0.64)) / F32(0.14)) ** 2
        density[reg.sl] += F32(geo.anatomy.breast) * np.sqrt(_clip01(F32(1.0) - e)) * _smoothstep(0.5, 0.74, reg.v)


def _airway(geo: Geometry, density: np.ndarray) -> None:
    """Subtract the trachea and main bronchi (air columns) from `density`."""
    a = geo.anatomy
    reg = region(geo, 0.38, 0.62, -0.2, a.carina_v + 0.08)
    if reg.empty:
        return
    v, dxs = reg.v, reg.dxs
    centre = F32(a.trachea_shift) * _smoothstep(0.18, 0.30, v)
    out = _soft(F32(0.013) - np.abs(dxs - centre), 1.5 * geo.px) * _soft(F32(a.carina_v) - v, 0.01)
    out *= _smoothstep(0.0, 0.06, v)
    for sign, angle, length, half in ((-1.0, 28.0, 0.06, 0.010), (1.0, 48.0, 0.075, 0.009)):
        ang = np.deg2rad(angle)
        p_x, p_v = a.trachea_shift, a.carina_v - 0.01
        e_x, e_v = p_x + sign * length * np.sin(ang), p_v + length * np.cos(ang)
        t = _clip01(((dxs - F32(p_x)) * F32(e_x - p_x) + (v - F32(p_v)) * F32(e_v - p_v)) * F32(1 / length**2))
        dist = np.hypot(dxs - (F32(p_x) + t * F32(e_x - p_x)), v - (F32(p_v) + t * F32(e_v - p_v)))
        out = np.maximum(out, _soft(F32(half) - dist, 1.5 * geo.px) * (F32(1.0) - F32(0.5) * t))
    density[reg.sl] -= F32(0.3) * out


def _bones(geo: Geometry, density: np.ndarray, heart_soft: np.ndarray) -> None:
    """Add spine, ribs and clavicles to `density`."""
    a = geo.anatomy

    # spine: vertebral bodies with end plates, discs and pedicles (faint behind the heart)
    reg = region(geo, 0.5 - 1.4 * a.spine_w, 0.5 + 1.4 * a.spine_w, -0.2, 1.2)
    if not reg.empty:
        v, adx = reg.v, reg.adx
        hw = F32(a.spine_w) * (F32(0.85) + F32(0.3) * _clip01(v))
        across = np.sqrt(_clip01(F32(1.0) - (adx / hw) ** 4))
        period = F32(a.vertebra_period) * (F32(0.9) + F32(0.2) * _clip01(v))
        phase = (v + F32(a.vertebra_phase * a.vertebra_period)) / period
        f = phase - np.floor(phase)
        disc = np.exp(-np.square((f - F32(0.04)) * F32(14.0))) + np.exp(-np.square((f - F32(1.04)) * F32(14.0)))
        plate = np.exp(-np.square((f - F32(0.13)) * F32(28.0))) + np.exp(-np.square((f - F32(0.93)) * F32(28.0)))
        spine = F32(0.15) * across * (F32(1.0) - F32(0.25) * disc + F32(0.12) * plate) * _smoothstep(0.0, 0.05, v)
        ped = ((adx - F32(0.72) * hw) / (F32(0.22) * hw)) ** 2 + ((f - F32(0.45)) * F32(5.0)) ** 2
        spine += F32(0.06) * np.exp(-np.square((ped - F32(1.0)) * F32(2.2))) * (adx < hw)
        density[reg.sl] += spine * (F32(1.0) - F32(0.4) * heart_soft[reg.sl])

    # posterior ribs: arcs from the spine, rising a little, then dropping at the lateral wall
    v, dxs, adx = geo.v, geo.dxs, geo.adx
    cage = np.where(v < F32(a.cp_v[0]), np.maximum(geo.lat_at("right"), geo.lat_at("left")), F32(max(a.lateral)))
    chest_in = _soft(cage + F32(0.03) - adx, 0.02) * _smoothstep(0.02, 0.08, v)
    below_domes = np.minimum(v - geo.dome_at("right"), v - geo.dome_at("left"))
    chest_in *= F32(1.0) - F32(0.5) * _smoothstep(0.0, 0.04, below_domes)
    phi = v + F32(a.rib_slope) * adx - F32(a.rib_drop) * (adx * F32(1 / 0.3)) ** 3
    phi -= F32(0.006) * (dxs > 0)  # the two sides are never quite level
    n = a.rib_v0.size
    k_lut = _Lut(lambda p: np.clip(np.rint(np.interp(p, a.rib_v0, np.arange(n))), 0, n - 1), -0.4, 1.6)
    k = k_lut(phi).astype(np.int32)
    half = a.rib_half.astype(F32)[k] * (F32(1.0) + F32(0.5) * _smoothstep(0.12, 0.36, adx))
    s = (phi - a.rib_v0.astype(F32)[k]) / half
    density += F32(0.13) * _bone_band(s) * _smoothstep(0.02, 0.05, adx) * chest_in

    # anterior ribs: fainter, sloping down towards the midline, fading into cartilage
    phi_a = v - F32(0.45) * (F32(0.42) - adx)
    m = a.ant_rib_v0.size
    ka_lut = _Lut(lambda p: np.clip(np.rint(np.interp(p, a.ant_rib_v0, np.arange(m))), 0, m - 1), -0.6, 1.6)
    ka = ka_lut(phi_a).astype(np.int32)
    sa = (phi_a - a.ant_rib_v0.astype(F32)[ka]) * F32(1 / 0.015)
    density += F32(0.07) * _bone_band(sa) * _smoothstep(0.12, 0.22, adx) * chest_in * (v < F32(0.8))

    # clavicles: S-shaped, from the sternal notch up and out to the shoulder
    reg = region(geo, 0.0, 1.0, -0.1, 0.32)
    if reg.empty:
        return
    for i, sign in enumerate((-1.0, 1.0)):
        dx = F32(sign) * reg.dxs
        d0 = dx - F32(0.025)
        centre = F32(a.clavicle_v[i]) - F32(0.26) * d0 + F32(0.32) * d0 * d0
        half_c = F32(0.015) + F32(0.006) * np.exp(-np.square(d0 * F32(25.0)))
        along = _smoothstep(0.0, 0.015, d0) * _smoothstep(0.34, 0.31, dx)
        density[reg.sl] += F32(0.2) * _bone_band((reg.v - centre) / half_c) * along


def _expose(density: np.ndarray, pose: Pose, rng: np.random.Generator, size: int) -> np.ndarray:
    """Film curve, system blur, edge enhancement and noise; to 8 bits."""
    scale = size / 256.0
    c, w = pose.film_center, pose.film_width
    low = 1.0 / (1.0 + np.exp(c / w))
    film = (F32(1.0) / (F32(1.0) + np.exp((F32(c) - density) * F32(1.0 / w))) - F32(low)) * F32(1.0 / (1.0 - low))
    film = _clip01(film) ** F32(pose.gamma)
    film = F32(pose.fog) + F32(1.0 - pose.fog) * film
    film = ndimage.gaussian_filter(film, pose.blur_px * scale)
    film += F32(pose.sharpen) * (film - ndimage.gaussian_filter(film, 3.0 * scale))
    grain = _noise(rng, size, 0.5 * scale)
    film += F32(pose.noise) * grain * (F32(0.6) + F32(0.6) * film)
    return np.clip(np.rint(film * F32(255.0)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- findings
# One renderer per finding: (finding, geometry, lung fields, generator) -> _FindingLayer.
# Airspace findings replace a fraction of the lung's air, so that no opacity is denser than
# soft tissue; a nodule adds its own tissue.


def _focal_region(geo: Geometry, side: str, cx: float, cv: float, rx: float, rv: float) -> Region:
    u = 0.5 + _SIGN[side] * cx
    return region(geo, u - rx, u + rx, cv - rv, cv + rv)


def _airspace_ellipse(finding: FindingSpec, geo: Geometry) -> tuple[Region, np.ndarray]:
    """Where a pneumonia or consolidation lies: its region and the squared elliptic distance
    from its centre (1 on the ellipse). Zone "heart" is in the lung against the heart border,
    `t` measured down the heart."""
    side, sh = finding.side, finding.shape
    if finding.zone == "heart":
        top, bottom = geo.anatomy.heart_top, geo.dome_top[SIDES.index(side)]
        cv = top + sh["t"] * (bottom - top)
        cx = float(geo.mediastinum(side, cv)) + sh["rx"] * 0.5
    else:
        cx, cv = geo.point(side, sh["t"], sh["f"])
    reg = _focal_region(geo, side, cx, cv, 2.2 * sh["rx"], 2.2 * sh["rv"])
    dx, v = reg.side_dx(side), reg.v
    e = ((dx - F32(cx)) * F32(1 / sh["rx"])) ** 2 + ((v - F32(cv)) * F32(1 / sh["rv"])) ** 2
    return reg, e


def _airspace_layer(
    finding: FindingSpec, reg: Region, opacity: np.ndarray, lungs: _LungFields, bronchograms: bool
) -> _FindingLayer:
    """An airspace opacity within its lung: it replaces the air, and with `bronchograms` the
    bronchi stay dark inside the airless lung."""
    side = finding.side
    opacity *= reg.take(lungs.soft[side])
    added = F32(finding.shape["amp"] * _LUNG_AIR) * opacity * reg.take(lungs.air)
    if bronchograms:
        added -= F32(0.12) * _clip01(reg.take(lungs.bronchi) * F32(1 / 0.008)) * opacity
    mask = (opacity > 0.3) & reg.take(lungs.hard[side])
    return _FindingLayer(reg, added, mask, F32(1.0) - F32(0.85) * opacity)


def _render_pneumonia(finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator) -> _FindingLayer:
    """Patchy and ill-defined, several confluent blobs: wide, hazy and mottled, with aerated
    gaps, unlike a consolidation's dense sharp block or a nodule's small round ball."""
    reg, e = _airspace_ellipse(finding, geo)
    zoom_px = geo.size * geo.total_zoom
    blur = max(0.5, 0.005 * zoom_px)
    envelope = np.exp(-(e ** F32(1.2)))
    patch = envelope * (F32(0.85) + F32(0.5) * _noise(rng, reg.shape, 0.015 * zoom_px))
    patch += F32(0.1) * envelope * _noise(rng, reg.shape, 0.006 * zoom_px)
    opacity = ndimage.gaussian_filter(_smoothstep(0.15, 0.9, patch), 1.5 * blur)
    return _airspace_layer(finding, reg, opacity, lungs, bronchograms=False)


def _render_consolidation(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """Dense and homogeneous, with a sharp irregular outline and air bronchograms."""
    reg, e = _airspace_ellipse(finding, geo)
    zoom_px = geo.size * geo.total_zoom
    blur = max(0.5, 0.005 * zoom_px)
    e = e / np.square(F32(1.0) + F32(0.18) * _noise(rng, reg.shape, 0.02 * zoom_px))
    opacity = ndimage.gaussian_filter(_smoothstep(0.35, 0.6, np.exp(-(e**2))), 1.2 * blur)
    opacity *= F32(0.93) + F32(0.07) * _noise(rng, reg.shape, 0.004 * zoom_px)
    return _airspace_layer(finding, reg, opacity, lungs, bronchograms=True)


def _render_effusion(finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator) -> _FindingLayer:
    """Fluid filling the lung's base up to a meniscus that rises towards the lateral wall, on
    one side or both."""
    sh = finding.shape
    reg = region(geo, 0.0, 1.0, 0.3, 1.2)
    v = reg.v
    added = np.zeros(reg.shape, dtype=F32)
    mask = np.zeros(reg.shape, dtype=bool)
    for side in SIDES if finding.side == "bilateral" else (finding.side,):
        i = SIDES.index(side)
        dx = reg.side_dx(side)
        top, bottom = geo.lung_extent(i)
        level = bottom - sh["depth"] * (bottom - top)
        med, lat = reg.take(geo.med_at(side)), reg.take(geo.lat_at(side))
        rel = np.clip((dx - med) / np.maximum(lat - med, F32(1e-3)), 0.0, 1.2)
        meniscus = F32(level) - F32(sh["meniscus"]) * rel ** F32(1.6)
        fluid = _smoothstep(-0.004, 0.03, v - meniscus)
        envelope = reg.take(geo.envelope_distance(side))
        inside = _soft(envelope + F32(0.01), 2 * geo.px) * _smoothstep(-0.03, 0.01, dx - med)
        added += (F32(_LUNG_AIR) * reg.take(lungs.air) + F32(0.05)) * fluid * inside
        mask |= reg.take(lungs.hard[side]) & (fluid > 0.5)
    return _FindingLayer(reg, added, mask, np.ones(reg.shape, dtype=F32))


def _render_cardiomegaly(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """Nothing to add: `Geometry` already drew the enlarged heart; the mask is the heart."""
    reg = region(geo, 0.0, 1.0, 0.3, 1.0)
    return _FindingLayer(reg, np.zeros(reg.shape, dtype=F32), reg.take(geo.heart_distance()) > 0,
                         np.ones(reg.shape, dtype=F32))


def _render_lung_lesion(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """A nodule or mass: a smooth, well circumscribed, slightly lobulated ball of tissue (a
    consolidation is mottled, with air bronchograms)."""
    side, sh = finding.side, finding.shape
    zoom_px = geo.size * geo.total_zoom
    cx, cv = geo.point(side, sh["t"], sh["f"])
    reg = _focal_region(geo, side, cx, cv, 1.6 * sh["radius"], 1.6 * sh["radius"])
    dx, v = reg.side_dx(side), reg.v
    ang = np.arctan2(v - F32(cv), dx - F32(cx))
    lobes = F32(1.0) + F32(0.09) * np.sin(F32(3) * ang + F32(sh["phase"])) + F32(0.05) * np.sin(F32(5) * ang + F32(2 * sh["phase"]))
    rr = np.hypot(dx - F32(cx), v - F32(cv)) / (F32(sh["radius"]) * lobes)
    ball = np.sqrt(_clip01(F32(1.0) - rr * rr))
    ball = ndimage.gaussian_filter(ball, max(0.5, 0.005 * zoom_px))
    added = F32(sh["amp"]) * ball * (F32(0.95) + F32(0.05) * _noise(rng, reg.shape, max(0.5, 0.004 * zoom_px)))
    return _FindingLayer(reg, added, rr < 1.0, F32(1.0) - F32(0.7) * ball)


def _render_pneumothorax(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """Pleural air along the lateral wall and the apex, thinning downwards: lucent, no vessels,
    the visceral pleural line and the collapsed lung's edge a little denser."""
    side, sh = finding.side, finding.shape
    u_lat = 0.5 + _SIGN[side] * 0.45
    reg = region(geo, min(0.5, u_lat), max(0.5, u_lat), 0.0, 0.85)
    top, bottom = geo.lung_extent(SIDES.index(side))
    t = _clip01((reg.v - F32(top)) * F32(1.0 / (bottom - top)))
    rim = F32(sh["rim"]) * _clip01(F32(1.0) - t * F32(1.0 / sh["extent"])) ** F32(0.6)
    dist = reg.take(geo.outer_distance(side))
    in_lung = reg.take(lungs.soft[side])
    pleural_air = _soft(rim - dist, 1.5 * geo.px) * in_lung
    visible = (rim > F32(0.006)) * in_lung
    line = np.exp(-np.square((dist - rim) * F32(1.0 / (1.2 * geo.px + 0.0015)))) * visible
    collapsed = _soft(dist - rim, geo.px) * _soft(rim + F32(0.05) - dist, 0.03) * visible
    added = F32(0.22) * line + F32(0.1) * collapsed - F32(sh["lucency"]) * pleural_air
    mask = reg.take(lungs.hard[side]) & (dist < rim) & (rim > F32(0.004))
    return _FindingLayer(reg, added, mask, F32(1.0) - pleural_air)


def _render_edema(finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator) -> _FindingLayer:
    """Bilateral perihilar haze (batwing), patchy, with Kerley B lines at the bases."""
    sh = finding.shape
    zoom_px = geo.size * geo.total_zoom
    reg = region(geo, 0.0, 1.0, 0.05, 1.0)
    v = reg.v
    added = np.zeros(reg.shape, dtype=F32)
    mask = np.zeros(reg.shape, dtype=bool)
    patch = F32(1.0) + F32(0.25) * _noise(rng, reg.shape, 0.015 * zoom_px)
    for i, side in enumerate(SIDES):
        dx = reg.side_dx(side)
        top, bottom = geo.lung_extent(i)
        hv = top + 0.5 * (bottom - top)
        hx = float(geo.mediastinum(side, hv)) + 0.02
        haze = np.exp(F32(-0.5) * (((dx - F32(hx)) * F32(1 / sh["sx"])) ** 2 + ((v - F32(hv)) * F32(1 / sh["sv"])) ** 2))
        haze *= patch
        soft = reg.take(lungs.soft[side])
        added += F32(sh["amp"] * _LUNG_AIR) * haze * reg.take(lungs.air)
        lat = reg.take(geo.lat_at(side))
        for k in range(sh["kerley"]):  # Kerley B lines: short horizontal lines at the bases
            vk = top + (0.62 + 0.05 * k) * (bottom - top)
            line = np.exp(-np.square((v - F32(vk)) * F32(1.0 / (0.0025 + geo.px))))
            added += F32(0.08) * line * _soft(F32(0.03) - (lat - dx), 0.004) * soft
        mask |= reg.take(lungs.hard[side]) & (haze > 0.5)
    return _FindingLayer(reg, added, mask, np.full(reg.shape, 0.75, dtype=F32))


def _render_atelectasis(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """A plate of collapsed lung near the base: thickest in the middle, tapering to both
    ends, soft edges (the lifted hemidiaphragm is drawn by `Geometry`)."""
    side, sh = finding.side, finding.shape
    zoom_px = geo.size * geo.total_zoom
    cx, cv = geo.point(side, sh["t"], sh["f"])
    reach = 0.6 * sh["length"] + 2 * sh["half"]
    reg = _focal_region(geo, side, cx, cv, reach, reach)
    dx, v = reg.side_dx(side), reg.v
    ang = np.deg2rad(sh["angle"])
    along = (dx - F32(cx)) * F32(np.cos(ang)) + (v - F32(cv)) * F32(np.sin(ang))
    across = -(dx - F32(cx)) * F32(np.sin(ang)) + (v - F32(cv)) * F32(np.cos(ang))
    across = across - F32(sh["bow"]) * (along * F32(1 / sh["length"])) ** 2
    taper = np.sqrt(_clip01(F32(1.0) - np.square(along * F32(2.0 / sh["length"]))))
    local_half = F32(sh["half"]) * (F32(0.25) + F32(0.75) * taper)
    band = np.exp(-np.square(across / local_half)) * _smoothstep(0.0, 0.15, taper)
    band = ndimage.gaussian_filter(band, max(0.5, 0.003 * zoom_px))
    added = F32(0.95 * _LUNG_AIR) * band * reg.take(lungs.air)
    mask = (np.abs(across) < F32(1.2) * local_half) & (taper > 0.05) & reg.take(lungs.hard[side])
    return _FindingLayer(reg, added, mask, F32(1.0) - F32(0.8) * band)


FindingRenderer = Callable[[FindingSpec, Geometry, _LungFields, np.random.Generator], _FindingLayer]
FINDING_RENDERERS: dict[str, FindingRenderer] = {
    "Pneumonia": _render_pneumonia,
    "Consolidation": _render_consolidation,
    "Pleural Effusion": _render_effusion,
    "Cardiomegaly": _render_cardiomegaly,
    "Lung Lesion": _render_lung_lesion,
    "Pneumothorax": _render_pneumothorax,
    "Edema": _render_edema,
    "Atelectasis": _render_atelectasis,
}


def _render_finding(
    finding: FindingSpec, geo: Geometry, lungs: _LungFields, rng: np.random.Generator
) -> _FindingLayer:
    """Draw one finding with its renderer (FINDING_RENDERERS)."""
    try:
        renderer = FINDING_RENDERERS[finding.name]
    except KeyError:
        raise ValueError(f"unknown finding {finding.name!r}") from None
    return renderer(finding, geo, lungs, rng)
