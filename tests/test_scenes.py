"""make_synthetic_scenes: the ray-caster's geometry against the scene's own parameters."""

import numpy as np
import pytest
from sklearn.utils import check_random_state

from skssl import _scenes
from skssl.datasets import make_synthetic_scenes


def one_sphere_scene(centre, radius):
    """A drawn scene with only sphere slot 0 in it, at ``centre`` with ``radius``."""
    scenes = _scenes._sample_scenes(1, check_random_state(0), 1, 0)
    scenes.spheres[0, 0] = [*centre, radius]
    scenes.sphere_active[:] = False
    scenes.sphere_active[0, 0] = True
    scenes.box_active[:] = False
    return scenes


def surface_points(scenes, size):
    """Camera-frame 3-D point of every pixel, from its depth and the pixel's ray (n, h, w, 3)."""
    _, u, v = _scenes.camera_rays(size)
    z = scenes.depth
    return np.stack([u * z / scenes.focal, v * z / scenes.focal, z], -1)


@pytest.fixture(scope="module")
def scenes():
    return make_synthetic_scenes(40, (24, 32), random_state=0, max_objects=6)


def test_a_sphere_straight_ahead_is_at_its_analytic_depth_and_faces_the_camera():
    # 33 pixels: the centre pixel's ray is the optical axis
    out = _scenes.render_scenes(one_sphere_scene((0.0, 0.0, 4.0), 1.0), (33, 33))
    assert out.instances[0, 16, 16] == 2
    assert out.depth[0, 16, 16] == pytest.approx(3.0, abs=1e-5)
    np.testing.assert_allclose(out.normals[0, 16, 16], [0.0, 0.0, -1.0], atol=1e-5)
    # its silhouette: a pixel's ray hits the sphere iff it passes within the radius of the centre
    rays, _, _ = _scenes.camera_rays((33, 33))
    distance = np.linalg.norm(np.cross(rays, [0.0, 0.0, 4.0]), axis=1).reshape(33, 33)
    np.testing.assert_array_equal(out.instances[0] == 2, distance < 1.0)


def test_sphere_pixels_lie_on_their_sphere_with_the_radial_normal(scenes):
    points = surface_points(scenes, (24, 32))
    checked = 0
    for k in range(_scenes.N_SPHERES):
        scene, row, col = np.nonzero(scenes.instances == 2 + k)
        centre, radius = scenes.spheres[scene, k, :3], scenes.spheres[scene, k, 3]
        offset = points[scene, row, col] - centre
        np.testing.assert_allclose(np.linalg.norm(offset, axis=1), radius, rtol=1e-3)
        np.testing.assert_allclose(scenes.normals[scene, row, col], offset / radius[:, None], atol=2e-3)
        checked += len(scene)
    assert checked > 500


def test_box_pixels_lie_on_a_face_of_their_box_with_that_face_s_normal(scenes):
    points = surface_points(scenes, (24, 32))
    checked = 0
    for k in range(_scenes.N_BOXES):
        scene, row, col = np.nonzero(scenes.instances == 2 + _scenes.N_SPHERES + k)
        box = scenes.boxes[scene, k]
        cos, sin = np.cos(box[:, 6]), np.sin(box[:, 6])
        p = points[scene, row, col] - box[:, :3]
        local = np.stack([cos * p[:, 0] - sin * p[:, 2], p[:, 1], sin * p[:, 0] + cos * p[:, 2]], 1) / box[:, 3:6]
        np.testing.assert_allclose(np.abs(local).max(axis=1), 1.0, atol=2e-3)  # on the surface
        face = np.abs(local).argmax(axis=1)
        n = scenes.normals[scene, row, col]
        n_local = np.stack([cos * n[:, 0] - sin * n[:, 2], n[:, 1], sin * n[:, 0] + cos * n[:, 2]], 1)
        expected = np.zeros_like(n_local)
        expected[np.arange(len(face)), face] = np.sign(local[np.arange(len(face)), face])
        np.testing.assert_allclose(n_local, expected, atol=1e-4)
        checked += len(scene)
    assert checked > 200


def test_planes_are_where_the_scene_puts_them_and_face_the_camera(scenes):
    points = surface_points(scenes, (24, 32))
    ground = scenes.instances == _scenes.GROUND
    wall = scenes.instances == _scenes.WALL
    assert ground.any() and wall.any() and (ground | wall | scenes.masks).all()
    heights = np.broadcast_to(-scenes.ground[:, None, None], ground.shape)
    np.testing.assert_allclose(points[..., 1][ground], heights[ground], rtol=1e-4)
    np.testing.assert_allclose(scenes.normals[ground], np.tile([0.0, 1.0, 0.0], (ground.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(scenes.normals[wall], np.tile([0.0, 0.0, -1.0], (wall.sum(), 1)), atol=1e-6)
    depths = np.broadcast_to(scenes.wall[:, None, None], wall.shape)
    np.testing.assert_allclose(scenes.depth[wall], depths[wall], rtol=1e-5)


def test_normals_are_unit_vectors_facing_the_camera(scenes):
    np.testing.assert_allclose(np.linalg.norm(scenes.normals, axis=-1), 1.0, atol=1e-5)
    rays, _, _ = _scenes.camera_rays((24, 32))
    facing = np.einsum("nhwc,hwc->nhw", scenes.normals, rays.reshape(24, 32, 3))
    assert (facing < 1e-5).all()  # a visible surface never faces away from the camera


def test_edges_are_exactly_the_pixels_next_to_another_instance(scenes):
    ids = np.pad(scenes.instances, ((0, 0), (1, 1), (1, 1)), mode="edge")
    centre = ids[:, 1:-1, 1:-1]
    differs = ((ids[:, :-2, 1:-1] != centre) | (ids[:, 2:, 1:-1] != centre)
               | (ids[:, 1:-1, :-2] != centre) | (ids[:, 1:-1, 2:] != centre))
    np.testing.assert_array_equal(scenes.edges, differs)
    # the outline of every object is an edge on both of its sides
    mask = np.pad(scenes.masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
    outline = scenes.masks & ~(mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:])
    assert outline.any() and scenes.edges[outline].all()
    # depth jumps by half or more only across edges (a box face seen edge-on changes by up to 30% per pixel)
    jump = np.abs(np.diff(scenes.depth, axis=2)) > 0.5 * np.minimum(scenes.depth[:, :, 1:], scenes.depth[:, :, :-1])
    assert jump.any() and scenes.edges[:, :, 1:][jump].all() and scenes.edges[:, :, :-1][jump].all()


def test_same_seed_same_scenes_and_another_seed_other_scenes():
    a, b = (make_synthetic_scenes(5, 16, random_state=3) for _ in range(2))
    c = make_synthetic_scenes(5, 16, random_state=4)
    for key in ("images", "depth", "normals", "edges", "instances"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a.depth, c.depth)


def test_textures_change_the_images_but_not_the_geometry():
    plain = make_synthetic_scenes(20, 16, random_state=0)
    dark, bright = (make_synthetic_scenes(20, 16, random_state=0, textures=np.full((2, 28, 28), value))
                    for value in (0.0, 1.0))
    np.testing.assert_array_equal(plain.depth, dark.depth)
    # a constant texture is scaled to 0: the textured surfaces take their first colour either way
    np.testing.assert_array_equal(dark.images, bright.images)
    ramp = np.tile(np.linspace(0, 255, 28), (2, 28, 1))  # left dark, right bright
    left, right = (make_synthetic_scenes(20, 16, random_state=0, textures=t) for t in (ramp, ramp[:, :, ::-1]))
    assert (left.images != right.images).mean() > 0.1


def test_grayscale_renders_are_the_luminance_of_the_colour_ones():
    rgb = make_synthetic_scenes(4, 16, random_state=0)
    gray = make_synthetic_scenes(4, 16, random_state=0, channels=1)
    assert gray.images.shape == (4, 16, 16) and gray.images.dtype == np.uint8
    np.testing.assert_allclose(gray.images, rgb.images @ np.array([0.299, 0.587, 0.114]), atol=1.5)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(n=0), "n must be"), (dict(n=2, size=0), "size"), (dict(n=2, size=(4, 4, 4)), "size"),
    (dict(n=2, channels=2), "channels"), (dict(n=2, max_objects=7), "max_objects"),
    (dict(n=2, textures=np.zeros((3, 4))), "textures"), (dict(n=2, textures=np.full((1, 4, 4), np.nan)), "NaN"),
])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_scenes(**kwargs)
