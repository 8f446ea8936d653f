"""A small procedural renderer: spheres, boxes and two planes, ray-cast in numpy.

It stands in for the game engine of Ren & Lee (2018): every pixel's depth,
surface normal and object is known exactly. A pinhole camera sits at the
origin looking down +z (x right, y up); a ground plane ``y = -ground`` and a
back wall ``z = wall`` close the scene, so every ray hits a surface. Rays are
cast for a chunk of scenes and all their pixels at once; the only Python loop
is over the few object slots.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_synthetic_scenes", "render_scenes"]

# Horizontal field of view of 60 degrees: image x in [-1, 1] at focal length 1/tan(30 deg).
FOCAL = float(1.0 / np.tan(np.radians(30.0)))
N_SPHERES = 3
N_BOXES = 3
# Instance ids: the two planes, then the sphere slots, then the box slots.
WALL, GROUND = 0, 1
_EPS = 1e-4
_CHUNK_PIXELS = 1 << 19  # rays per chunk: a few MB per float32 array, cache-friendly


def _pair(size):
    if isinstance(size, Integral):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, Integral) and s >= 1 for s in size):
        raise ValueError(f"size must be a positive int or an (h, w) pair of positive ints; got {size!r}.")
    return int(size[0]), int(size[1])


def camera_rays(size):
    """Unit ray directions ``(h*w, 3)`` through the pixel centres, row-major, and the pixel coordinates ``(u, v)``.

    ``u`` runs from -1 to 1 across the width (pixel centres), ``v`` upwards with
    the same spacing, so a point ``(x, y, z)`` projects to ``(FOCAL*x/z, FOCAL*y/z)``.
    """
    h, w = size
    u = (2.0 * (np.arange(w) + 0.5) / w - 1.0).astype(np.float32)
    v = (-(2.0 * (np.arange(h) + 0.5) / w - h / w)).astype(np.float32)
    uu, vv = np.meshgrid(u, v)
    d = np.stack([uu.ravel(), vv.ravel(), np.full(h * w, FOCAL, np.float32)], 1)
    return d / np.linalg.norm(d, axis=1, keepdims=True), uu, vv


def _sample_scenes(n, rng, max_objects, n_textures):
    """Random scene parameters, one row per scene (all float32 except the integer fields)."""
    ground = rng.uniform(0.8, 1.3, n)
    wall = rng.uniform(7.0, 10.0, n)
    n_objects = rng.randint(1, max_objects + 1, n)
    # which slots are used: a random subset of n_objects of the 6 slots
    order = np.argsort(rng.random((n, N_SPHERES + N_BOXES)), axis=1)
    active = np.zeros((n, N_SPHERES + N_BOXES), bool)
    np.put_along_axis(active, order, np.arange(N_SPHERES + N_BOXES)[None] < n_objects[:, None], axis=1)

    def positions(k, half_height):
        z = rng.uniform(2.8, 6.5, (n, k))
        x = rng.uniform(-0.45, 0.45, (n, k)) * z  # inside the view horizontally
        floating = rng.random((n, k)) < 0.25
        y = -ground[:, None] + half_height + np.where(floating, rng.uniform(0.2, 1.0, (n, k)), 0.0)
        return np.stack([x, y, z], -1)

    radius = rng.uniform(0.35, 0.9, (n, N_SPHERES))
    spheres = np.concatenate([positions(N_SPHERES, radius), radius[..., None]], -1)
    half = rng.uniform(0.25, 0.7, (n, N_BOXES, 3))
    angle = np.where(rng.random((n, N_BOXES)) < 0.3, 0.0, rng.uniform(0, np.pi / 2, (n, N_BOXES)))
    boxes = np.concatenate([positions(N_BOXES, half[..., 1]), half, angle[..., None]], -1)
    # light: a unit vector towards the light, from above and in front
    light = np.stack([rng.uniform(-1, 1, n), rng.uniform(0.4, 1.5, n), -rng.uniform(0.2, 1.2, n)], 1)
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    n_surfaces = 2 + N_SPHERES + N_BOXES
    colours = rng.uniform(0.15, 1.0, (n, n_surfaces, 2, 3))
    # texture per surface: 0 flat, 1 checks, 2 stripes, 3 an image of ``textures``
    pattern = rng.randint(0, 3, (n, n_surfaces))
    if n_textures:
        pattern = np.where(rng.random((n, n_surfaces)) < 0.5, 3, pattern)
    texture_index = rng.randint(0, max(n_textures, 1), (n, n_surfaces))
    frequency = rng.uniform(2.0, 5.0, (n, n_surfaces))
    ambient = rng.uniform(0.15, 0.4, n)
    f32 = np.float32
    return Bunch(ground=ground.astype(f32), wall=wall.astype(f32), spheres=spheres.astype(f32),
                 sphere_active=active[:, :N_SPHERES], boxes=boxes.astype(f32), box_active=active[:, N_SPHERES:],
                 light=light.astype(f32), colours=colours.astype(f32), pattern=pattern, texture_index=texture_index,
                 frequency=frequency.astype(f32), ambient=ambient.astype(f32))


class _Hits:
    """The nearest surface found so far for every ray of a chunk: ``(m, p)`` arrays."""

    def __init__(self, m, p):
        self.t = np.full((m, p), np.inf, np.float32)
        self.instance = np.zeros((m, p), np.int16)
        self.normal = np.zeros((3, m, p), np.float32)
        self.uv = np.zeros((2, m, p), np.float32)

    def update(self, t, instance, normal, uv):
        """Keep ``t`` (inf where missed) wherever it is nearer; ``normal`` and ``uv`` are per-component arrays."""
        closer = t < self.t
        self.t = np.where(closer, t, self.t)
        self.instance = np.where(closer, np.int16(instance), self.instance)
        for i in range(3):
            np.copyto(self.normal[i], normal[i], where=closer)
        for i in range(2):
            np.copyto(self.uv[i], uv[i], where=closer)


def _planes(hits, d, s):
    dx, dy, dz = d
    ones = np.ones_like(hits.t)
    with np.errstate(divide="ignore"):
        t = np.where(dz > 0, s.wall[:, None] / dz, np.inf).astype(np.float32) * ones
    hits.update(t, WALL, (0 * ones, 0 * ones, -ones), (t * dx / 4, t * dy / 4))  # a pattern period of 4 units
    with np.errstate(divide="ignore"):
        t = np.where(dy < 0, -s.ground[:, None] / dy, np.inf).astype(np.float32)
    hits.update(t, GROUND, (0 * ones, ones, 0 * ones), (t * dx / 4, t * dz / 4))


def _sphere(hits, d, centre, radius, active, instance):
    """Nearest intersection with one sphere slot (the camera is always outside it)."""
    cx, cy, cz = (centre[:, i, None] for i in range(3))
    r = radius[:, None]
    b = d[0] * cx + d[1] * cy + d[2] * cz
    disc = b * b - (cx * cx + cy * cy + cz * cz - r * r)
    t = b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > _EPS) & active[:, None], t, np.inf).astype(np.float32)
    nx, ny, nz = ((t * d[i] - c) / r for i, c in enumerate((cx, cy, cz)))
    # texture coordinates: the visible hemisphere seen from the front
    hits.update(t, instance, (nx, ny, nz), ((nx + 1) / 2, (1 - ny) / 2))


def _box(hits, d, box, active, instance):
    """Nearest intersection with one box slot, rotated by ``angle`` about the vertical axis (slab method)."""
    c = [box[:, i, None] for i in range(3)]
    a = [box[:, 3 + i, None] for i in range(3)]
    cos, sin = np.cos(box[:, 6, None]), np.sin(box[:, 6, None])
    # ray in the box's frame: local = R^T (world - centre), R rotating local x towards world -z
    origin = (-(cos * c[0] - sin * c[2]), -c[1] + 0 * cos, -(sin * c[0] + cos * c[2]))
    direction = (cos * d[0] - sin * d[2], d[1] + 0 * cos, sin * d[0] + cos * d[2])
    near = np.full(hits.t.shape, -np.inf, np.float32)
    far = np.full(hits.t.shape, np.inf, np.float32)
    axis = np.zeros(hits.t.shape, np.int8)
    sign = np.zeros(hits.t.shape, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(3):
            inv = 1.0 / direction[i]
            t1, t2 = (-a[i] - origin[i]) * inv, (a[i] - origin[i]) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            entering = lo > near
            near = np.where(entering, lo, near)
            axis = np.where(entering, np.int8(i), axis)
            sign = np.where(entering, -np.sign(direction[i]), sign)
            far = np.minimum(far, hi)
    t = np.where((near < far) & (near > _EPS) & active[:, None], near, np.inf).astype(np.float32)
    local_n = [np.where(axis == i, sign, 0).astype(np.float32) for i in range(3)]
    normal = (cos * local_n[0] + sin * local_n[2], local_n[1], -sin * local_n[0] + cos * local_n[2])
    # texture coordinates: the two in-face local coordinates, scaled to [0, 1]
    p = [(origin[i] + np.where(np.isfinite(t), t, 0) * direction[i]) / a[i] for i in range(3)]
    u = np.where(axis == 0, p[2], p[0])
    v = np.where(axis == 1, p[2], p[1])
    hits.update(t, instance, normal, ((u + 1) / 2, (1 - v) / 2))


def _texture(hits, s, textures):
    """Per-pixel pattern value in [0, 1] of the surface each ray hit."""
    rows = np.arange(hits.t.shape[0])[:, None]
    pattern = s.pattern[rows, hits.instance]
    freq = s.frequency[rows, hits.instance]
    u, v = hits.uv
    checks = ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
    stripes = (np.floor((u + v) * freq) % 2).astype(np.float32)
    value = np.where(pattern == 1, checks, np.where(pattern == 2, stripes, 0.0))
    if textures is not None:
        k, th, tw = textures.shape[:3]
        tu, tv = u - np.floor(u), v - np.floor(v)  # planes tile the image
        index = s.texture_index[rows, hits.instance]
        image = textures[index, np.clip((tv * th).astype(np.int64), 0, th - 1), np.clip((tu * tw).astype(np.int64), 0, tw - 1)]
        value = np.where(pattern == 3, image, value)
    return value.astype(np.float32)


def _boundaries(instance):
    """Pixels with a 4-neighbour of another instance (both sides of every boundary)."""
    edge = np.zeros(instance.shape, bool)
    across = instance[:, 1:, :] != instance[:, :-1, :]
    edge[:, 1:, :] |= across
    edge[:, :-1, :] |= across
    across = instance[:, :, 1:] != instance[:, :, :-1]
    edge[:, :, 1:] |= across
    edge[:, :, :-1] |= across
    return edge


def render_scenes(scenes, size, textures=None):
    """Ray-cast scenes described by ``scenes`` (as :func:`_sample_scenes` draws them) at ``size`` (h, w).

    Returns ``rgb`` float32 ``(n, h, w, 3)`` in [0, 1], ``depth`` (z distance
    from the camera plane), unit ``normals``, ``instances`` and ``edges``.
    """
    h, w = size
    rays, _, _ = camera_rays(size)
    n = len(scenes.ground)
    out = Bunch(rgb=np.empty((n, h, w, 3), np.float32), depth=np.empty((n, h, w), np.float32),
                normals=np.empty((n, h, w, 3), np.float32), instances=np.empty((n, h, w), np.int16))
    step = max(1, _CHUNK_PIXELS // (h * w))
    d = [rays[:, i][None] for i in range(3)]
    with np.errstate(invalid="ignore", divide="ignore"):  # inf * 0 on missed rays, never kept
        for start in range(0, n, step):
            _render_chunk(out, slice(start, min(n, start + step)), scenes, d, size, textures)
    out.edges = _boundaries(out.instances)
    return out


def _render_chunk(out, part, scenes, d, size, textures):
    """Cast the rays of the scenes ``part`` and write their images and maps into ``out``."""
    h, w = size
    s = Bunch(**{k: v[part] for k, v in scenes.items()})
    m = len(s.ground)
    hits = _Hits(m, h * w)
    _planes(hits, d, s)
    for k in range(N_SPHERES):
        _sphere(hits, d, s.spheres[:, k, :3], s.spheres[:, k, 3], s.sphere_active[:, k], 2 + k)
    for k in range(N_BOXES):
        _box(hits, d, s.boxes[:, k], s.box_active[:, k], 2 + N_SPHERES + k)
    normal = hits.normal / np.linalg.norm(hits.normal, axis=0, keepdims=True)
    rows = np.arange(m)[:, None]
    lambert = np.maximum(0.0, np.einsum("imp,mi->mp", normal, s.light))
    pattern = _texture(hits, s, textures)
    colours = s.colours[rows, hits.instance]  # (m, p, 2, 3)
    albedo = colours[..., 0, :] + (colours[..., 1, :] - colours[..., 0, :]) * pattern[..., None]
    ambient = s.ambient[:, None, None]
    out.rgb[part] = (albedo * (ambient + (1 - ambient) * lambert[..., None])).reshape(m, h, w, 3)
    out.depth[part] = (hits.t * d[2]).reshape(m, h, w)
    out.normals[part] = normal.transpose(1, 2, 0).reshape(m, h, w, 3)
    out.instances[part] = hits.instance.reshape(m, h, w)


def _check_textures(textures):
    if textures is None:
        return None
    textures = np.asarray(textures)
    if textures.dtype.kind not in "uifb" or textures.ndim not in (3, 4) or 0 in textures.shape:
        raise ValueError(f"textures must be a non-empty numeric array of images (k, h, w) or (k, h, w, c); "
                         f"got shape {textures.shape} and dtype {textures.dtype}.")
    if textures.ndim == 4:  # colour textures are used by their luminance: they modulate the surface colours
        textures = textures.mean(axis=3)
    textures = textures.astype(np.float32)
    if not np.isfinite(textures).all():
        raise ValueError("textures contains NaN or infinity.")
    low, high = float(textures.min()), float(textures.max())
    return (textures - low) / max(high - low, 1e-12)


def make_synthetic_scenes(n, size=32, *, random_state=None, textures=None, channels=3, max_objects=4):
    """Render random 3-D scenes with their exact depth, surface normals and contours.

    A small procedural renderer standing in for the game engine of Ren &
    Lee, "Cross-Domain Self-supervised Multi-task Feature Learning using
    Synthetic Imagery" (CVPR 2018). Each scene has a ground plane and a
    back wall, and 1 to ``max_objects`` spheres and boxes (axis-aligned or
    rotated about the vertical axis) standing on the ground or floating
    above it, seen by a pinhole camera with a 60 degree horizontal field of
    view. Surfaces are flat-coloured, checked, striped or, when ``textures``
    is given, carry one of its images; a random directional light and
    ambient term shade them (Lambert, no shadows). Rays are cast for many
    scenes and all their pixels at once with numpy (10,000 scenes of 32x32
    pixels take a few seconds on one CPU core; see benchmarks/synthetic.py).

    Parameters
    ----------
    n : int
        Number of scenes.
    size : int or tuple (h, w), default=32
        Image size in pixels.
    random_state : int, RandomState or None, default=None
        Seeds the scenes: the same seed gives the same images and maps.
    textures : array-like of shape (k, th, tw) or (k, th, tw, c), default=None
        Images to map onto surfaces (digits or Fashion-MNIST, say); each
        surface then carries one of them with probability 0.5, blending its
        two colours by the image's intensity (scaled to [0, 1] over the
        whole array). Planes tile the image, boxes show it on every face,
        spheres on their front.
    channels : {1, 3}, default=3
        3 renders RGB images; 1 their luminance (ITU-R 601 weights).
    max_objects : int, default=4
        Most objects per scene (1 to 6); each scene has between 1 and this many.

    Returns
    -------
    sklearn.utils.Bunch
        ``images``: uint8 of shape (n, h, w, 3), or (n, h, w) for
        ``channels=1``; ``depth``: float32 (n, h, w), the distance of each
        pixel's surface point from the camera plane (its z coordinate);
        ``normals``: float32 (n, h, w, 3), unit surface normals in camera
        coordinates (x right, y up, z away from the camera); ``edges``: bool
        (n, h, w), the pixels on either side of a boundary between two
        instances (every depth discontinuity of these convex objects lies on
        one); ``instances``: int16 (n, h, w), which surface each pixel shows
        (0 the wall, 1 the ground, 2 to 4 the sphere slots, 5 to 7 the box
        slots); ``masks``: bool (n, h, w), the pixels showing an object;
        ``focal``: the focal length in units of half the image width;
        ``ground`` and ``wall``: float32 (n,), the planes ``y = -ground``
        and ``z = wall``; ``spheres``: float32 (n, 3, 4), centre and radius of each sphere
        slot, and ``boxes``: float32 (n, 3, 7), centre, half extents and
        rotation angle, with ``sphere_active``/``box_active`` (n, 3) saying
        which slots are in the scene; ``light``: float32 (n, 3), the unit
        vector towards the light.

    See Also
    --------
    skssl.SyntheticTransferSSL : Learns from these scenes' maps and real images.

    Examples
    --------
    >>> from skssl.datasets import make_synthetic_scenes
    >>> scenes = make_synthetic_scenes(100, size=32, random_state=0)
    >>> scenes.images.shape, scenes.depth.shape, scenes.normals.shape, scenes.edges.dtype
    ((100, 32, 32, 3), (100, 32, 32), (100, 32, 32, 3), dtype('bool'))
    """
    if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    size = _pair(size)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
    if not isinstance(max_objects, Integral) or not 1 <= max_objects <= N_SPHERES + N_BOXES:
        raise ValueError(f"max_objects must be an integer from 1 to {N_SPHERES + N_BOXES}; got {max_objects!r}.")
    textures = _check_textures(textures)
    rng = check_random_state(random_state)
    scenes = _sample_scenes(int(n), rng, int(max_objects), 0 if textures is None else len(textures))
    out = render_scenes(scenes, size, textures)
    rgb = out.pop("rgb")
    if channels == 1:
        rgb = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    out.images = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    out.masks = out.instances >= 2
    out.focal = FOCAL
    out.update({k: scenes[k] for k in ("ground", "wall", "spheres", "boxes", "sphere_active", "box_active", "light")})
    return out
