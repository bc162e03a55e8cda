"""Render one of Kiln's hard synthetic capture sets with Blender Cycles (issue 17's Data).

    blender -b --factory-startup -P scripts/hard_sets/make_set.py -- --set NAME --out DIR \
        --views N --width W --height H --samples S --seed K [--jpeg-quality Q] \
        [--check-script check_dataset.py --check-python python3]

Sets (every object is modelled here, procedurally; nothing is downloaded):
  white-mug    a plain white mug (a turned shell with a handle, 95 mm tall) on a light, finely
               flecked table, soft light, all around;
  glossy-vase  a glossy (low roughness) blue vase on a lightly textured table, all around;
  dark-object  a dark (albedo about 0.04), nearly textureless object on a dark floor, all around;
  quarter      a textured object photographed over 90 degrees of azimuth only (one side).
The first three have a few flat textured blocks lying on the table around the object (see
`add_props`): with a plain object on a plain, flat table the photos hold no feature off one
plane, and Kiln's mapper (like any that needs a non-planar initial pair) cannot start.

The output follows the shared bunny-synth set's conventions exactly: +Z up, metres; nerfstudio
`transforms.json` with camera-to-world matrices in the OpenGL camera frame; `images/NNNN.jpg`;
`masks/NNNN.png` (255 = object); `gt_mesh.ply` (the object alone, binary PLY, float32 x y z and
triangles, world frame); `gt.json`; frame i is in the test split when i % 8 == 0; and a README
written here, with the result of the shared convention check (`check_dataset.py`) when given.

Deterministic: the cameras come from a seeded generator, Cycles uses the same seed, and nothing
depends on the time or the machine (render times are printed, not written).
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import time

import bmesh
import bpy
from mathutils import Matrix, Vector

SETS = ("white-mug", "glossy-vase", "dark-object", "quarter")
SENSOR_WIDTH_MM = 36.0
TEST_EVERY = 8
# Adaptive sampling stops a pixel once its noise estimate is under this; without a denoiser a
# lower threshold than bunny-synth's 0.02 (which was denoised) keeps flat areas clean.
ADAPTIVE_THRESHOLD = 0.01
# Samples per pixel of the mask pass: pure emission, one camera ray per sample, so 64 cost little
# and give coverage in steps of 1/16 at the edges.
MASK_SAMPLES = 16


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

def revolve(profile, segments):
    """Vertices and faces of the closed surface made by turning `profile` about +Z.

    `profile` is a list of (radius, z) from the bottom on the axis to the top on the axis; points
    with radius 0 become single pole vertices, the others rings of `segments` vertices.
    """
    verts, rings = [], []
    for r, z in profile:
        if r <= 0.0:
            rings.append([len(verts)])
            verts.append((0.0, 0.0, z))
        else:
            ring = []
            for k in range(segments):
                a = 2.0 * math.pi * k / segments
                ring.append(len(verts))
                verts.append((r * math.cos(a), r * math.sin(a), z))
            rings.append(ring)
    faces = []
    for lower, upper in zip(rings, rings[1:]):
        for k in range(segments):
            k1 = (k + 1) % segments
            if len(lower) == 1:
                faces.append((lower[0], upper[k], upper[k1]))
            elif len(upper) == 1:
                faces.append((lower[k], upper[0], lower[k1]))
            else:
                faces.append((lower[k], upper[k], upper[k1], lower[k1]))
    return verts, faces


def superellipsoid(a, b, c, e_lat, e_lon, lat_steps, lon_steps, shape=None):
    """A closed superellipsoid (semi-axes a, b, c; exponents e_lat, e_lon) as vertices and faces,
    poles on the Z axis; `shape(x, y, z)` may move each vertex afterwards."""
    def cs(w, m):
        cw, sw = math.cos(w), math.sin(w)
        return (math.copysign(abs(cw) ** m, cw), math.copysign(abs(sw) ** m, sw))

    verts = [(0.0, 0.0, -c)]
    for i in range(1, lat_steps):
        v = -math.pi / 2 + math.pi * i / lat_steps
        cv, sv = cs(v, e_lat)
        for j in range(lon_steps):
            u = -math.pi + 2.0 * math.pi * j / lon_steps
            cu, su = cs(u, e_lon)
            verts.append((a * cv * cu, b * cv * su, c * sv))
    verts.append((0.0, 0.0, c))
    top = len(verts) - 1
    if shape:
        verts = [shape(*p) for p in verts]
    faces = []

    def ring(i, j):
        return 1 + (i - 1) * lon_steps + (j % lon_steps)

    for j in range(lon_steps):
        faces.append((0, ring(1, j + 1), ring(1, j)))
        faces.append((top, ring(lat_steps - 1, j), ring(lat_steps - 1, j + 1)))
    for i in range(1, lat_steps - 1):
        for j in range(lon_steps):
            faces.append((ring(i, j), ring(i, j + 1), ring(i + 1, j + 1), ring(i + 1, j)))
    return verts, faces


def tube(path, radius_side, radius_up, sides):
    """A closed tube along `path` (points in the XZ plane, y = 0) with an elliptical section
    (half-widths `radius_side` along Y and `radius_up` in the path's plane), capped at both ends."""
    verts, rings = [], []
    n = len(path)
    for i, p in enumerate(path):
        q0 = Vector(path[max(i - 1, 0)])
        q1 = Vector(path[min(i + 1, n - 1)])
        tangent = (q1 - q0).normalized()
        side = Vector((0.0, 1.0, 0.0))
        normal = tangent.cross(side).normalized()
        ring = []
        for k in range(sides):
            a = 2.0 * math.pi * k / sides
            pt = Vector(p) + side * (radius_side * math.cos(a)) + normal * (radius_up * math.sin(a))
            ring.append(len(verts))
            verts.append(tuple(pt))
        rings.append(ring)
    faces = []
    for lower, upper in zip(rings, rings[1:]):
        for k in range(sides):
            k1 = (k + 1) % sides
            faces.append((lower[k], lower[k1], upper[k1], upper[k]))
    start = len(verts)
    verts.append(tuple(path[0]))
    end = len(verts)
    verts.append(tuple(path[-1]))
    for k in range(sides):
        k1 = (k + 1) % sides
        faces.append((start, rings[0][k1], rings[0][k]))
        faces.append((end, rings[-1][k], rings[-1][k1]))
    return verts, faces


def mesh_object(name, verts, faces):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    orient_outward(obj)
    return obj


def orient_outward(obj):
    """Makes the faces consistent and their normals point out (positive enclosed volume)."""
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
    bm.to_mesh(obj.data)
    bm.free()
    if signed_volume(obj.data) < 0.0:
        obj.data.flip_normals()


def signed_volume(mesh):
    total = 0.0
    for poly in mesh.polygons:
        idx = list(poly.vertices)
        a = mesh.vertices[idx[0]].co
        for k in range(1, len(idx) - 1):
            b, c = mesh.vertices[idx[k]].co, mesh.vertices[idx[k + 1]].co
            total += a.dot(b.cross(c)) / 6.0
    return total


def union(target, other):
    """`target` becomes the exact boolean union of both closed meshes; `other` is removed."""
    mod = target.modifiers.new("union", "BOOLEAN")
    mod.operation = "UNION"
    mod.solver = "EXACT"
    mod.object = other
    depsgraph = bpy.context.evaluated_depsgraph_get()
    baked = bpy.data.meshes.new_from_object(target.evaluated_get(depsgraph))
    target.modifiers.remove(mod)
    old = target.data
    target.data = baked
    bpy.data.meshes.remove(old)
    other_mesh = other.data
    bpy.data.objects.remove(other)
    bpy.data.meshes.remove(other_mesh)
    orient_outward(target)


def triangulate_and_check(obj):
    """Triangulates `obj` in place; returns (vertices, triangles) in world coordinates after
    checking that the surface is closed (every edge on exactly two triangles)."""
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    bmesh.ops.triangulate(bm, faces=bm.faces, quad_method="BEAUTY", ngon_method="BEAUTY")
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-7)
    open_edges = [e for e in bm.edges if len(e.link_faces) != 2]
    if open_edges:
        raise SystemExit(f"{obj.name}: the object's surface is not closed ({len(open_edges)} open edges)")
    bm.to_mesh(obj.data)
    bm.free()
    obj.data.update()
    world = obj.matrix_world
    verts = [tuple(world @ v.co) for v in obj.data.vertices]
    tris = [tuple(p.vertices) for p in obj.data.polygons]
    return verts, tris


def write_ply(path, verts, tris):
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        "comment ground-truth object mesh, metres, world frame of transforms.json (+Z up)\n"
        f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(tris)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        for v in verts:
            f.write(struct.pack("<3f", *v))
        for t in tris:
            f.write(struct.pack("<B3i", 3, *t))


def strip_metadata(path):
    """Removes the text Blender writes into its files (Cycles' render times, as PNG text chunks
    and JPEG comments), leaving the pixels' bytes untouched: the same set gives the same files."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        out, pos = [data[:8]], 8
        while pos < len(data):
            length = struct.unpack(">I", data[pos:pos + 4])[0]
            kind = data[pos + 4:pos + 8]
            end = pos + 12 + length
            if kind not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
                out.append(data[pos:end])
            pos = end
    elif data.startswith(b"\xff\xd8"):
        out, pos = [data[:2]], 2
        while pos < len(data):
            marker = data[pos + 1]
            if marker == 0xDA:  # start of scan: the rest is image data
                out.append(data[pos:])
                break
            length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
            if marker != 0xFE:  # COM
                out.append(data[pos:pos + 2 + length])
            pos += 2 + length
    else:
        return
    with open(path, "wb") as f:
        f.write(b"".join(out))


def smooth(obj, angle_deg=35.0):
    """Smooth shading with sharp edges above `angle_deg` (shading normals only: the geometry,
    and so the ground truth, is unchanged)."""
    for poly in obj.data.polygons:
        poly.use_smooth = True
    obj.data.use_auto_smooth = True
    obj.data.auto_smooth_angle = math.radians(angle_deg)


# --------------------------------------------------------------------------------------------
# Materials (procedural, in object coordinates: the texture is fixed to the surface, no UVs)
# --------------------------------------------------------------------------------------------

def principled(name, color, roughness, specular=0.5, clearcoat=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Specular"].default_value = specular
    bsdf.inputs["Clearcoat"].default_value = clearcoat
    return mat


def noise_color(name, dark, light, scale, detail, roughness, coords="Object", specular=0.5):
    """Principled BSDF whose base colour mixes `dark` and `light` by a noise texture."""
    mat = principled(name, dark, roughness, specular)
    nt = mat.node_tree
    tex = nt.nodes.new("ShaderNodeTexCoord")
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale
    noise.inputs["Detail"].default_value = detail
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].position = 0.3
    ramp.color_ramp.elements[0].color = (*dark, 1.0)
    ramp.color_ramp.elements[1].position = 0.7
    ramp.color_ramp.elements[1].color = (*light, 1.0)
    nt.links.new(tex.outputs[coords], noise.inputs["Vector"])
    nt.links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    nt.links.new(ramp.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def checker_noise(name, scale_checker, a, b, noise_scale, roughness):
    """A checker board whose two colours are each broken up by noise (a well-textured floor)."""
    mat = principled(name, a, roughness)
    nt = mat.node_tree
    tex = nt.nodes.new("ShaderNodeTexCoord")
    checker = nt.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = scale_checker
    checker.inputs["Color1"].default_value = (*a, 1.0)
    checker.inputs["Color2"].default_value = (*b, 1.0)
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = noise_scale
    noise.inputs["Detail"].default_value = 6.0
    mix = nt.nodes.new("ShaderNodeMixRGB")
    mix.blend_type = "MULTIPLY"
    mix.inputs["Fac"].default_value = 0.6
    nt.links.new(tex.outputs["Object"], checker.inputs["Vector"])
    nt.links.new(tex.outputs["Object"], noise.inputs["Vector"])
    nt.links.new(checker.outputs["Color"], mix.inputs["Color1"])
    nt.links.new(noise.outputs["Color"], mix.inputs["Color2"])
    nt.links.new(mix.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def speckled(name, base, fleck, cell_m, fleck_share, roughness):
    """A plain-looking surface with small flecks (a terrazzo or laminate tabletop): Voronoi cells
    of `cell_m` metres, each with a round fleck of colour `fleck` covering about `fleck_share` of
    its width, on `base` broken by a faint large-scale noise. The flecks are what a real plain
    table offers photogrammetry; the object itself stays untextured."""
    mat = principled(name, base, roughness)
    nt = mat.node_tree
    tex = nt.nodes.new("ShaderNodeTexCoord")
    vor = nt.nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 1.0 / cell_m
    spots = nt.nodes.new("ShaderNodeValToRGB")
    spots.color_ramp.interpolation = "LINEAR"
    spots.color_ramp.elements[0].position = 0.5 * fleck_share * 0.8
    spots.color_ramp.elements[0].color = (*fleck, 1.0)
    spots.color_ramp.elements[1].position = 0.5 * fleck_share
    spots.color_ramp.elements[1].color = (*base, 1.0)
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 8.0
    noise.inputs["Detail"].default_value = 2.0
    shade = nt.nodes.new("ShaderNodeMapRange")
    shade.inputs["To Min"].default_value = 0.94
    shade.inputs["To Max"].default_value = 1.04
    mix = nt.nodes.new("ShaderNodeMixRGB")
    mix.blend_type = "MULTIPLY"
    mix.inputs["Fac"].default_value = 1.0
    nt.links.new(tex.outputs["Object"], vor.inputs["Vector"])
    nt.links.new(tex.outputs["Object"], noise.inputs["Vector"])
    nt.links.new(vor.outputs["Distance"], spots.inputs["Fac"])
    nt.links.new(noise.outputs["Fac"], shade.inputs["Value"])
    nt.links.new(spots.outputs["Color"], mix.inputs["Color1"])
    nt.links.new(shade.outputs["Result"], mix.inputs["Color2"])
    nt.links.new(mix.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def patchwork(name, roughness, brightness=1.0, grain=0.7):
    """A strongly textured surface: Voronoi cells of varied colours with noise inside them
    (`grain`: how much), scaled by `brightness`."""
    mat = principled(name, (0.5, 0.5, 0.5), roughness)
    nt = mat.node_tree
    tex = nt.nodes.new("ShaderNodeTexCoord")
    vor = nt.nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 60.0
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 120.0
    noise.inputs["Detail"].default_value = 4.0
    mix = nt.nodes.new("ShaderNodeMixRGB")
    mix.blend_type = "OVERLAY"
    mix.inputs["Fac"].default_value = grain
    nt.links.new(tex.outputs["Object"], vor.inputs["Vector"])
    nt.links.new(tex.outputs["Object"], noise.inputs["Vector"])
    nt.links.new(vor.outputs["Color"], mix.inputs["Color1"])
    nt.links.new(noise.outputs["Color"], mix.inputs["Color2"])
    dim = nt.nodes.new("ShaderNodeMixRGB")
    dim.blend_type = "MULTIPLY"
    dim.inputs["Fac"].default_value = 1.0
    dim.inputs["Color2"].default_value = (brightness, brightness, brightness, 1.0)
    nt.links.new(mix.outputs["Color"], dim.inputs["Color1"])
    nt.links.new(dim.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def emission(name, color):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    em = nt.nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*color, 1.0)
    em.inputs["Strength"].default_value = 1.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    return mat


# --------------------------------------------------------------------------------------------
# The sets
# --------------------------------------------------------------------------------------------

def make_mug():
    """A turned mug shell (outer radius 41 mm, 3 mm wall, 95 mm tall, 7 mm base) with a
    C-shaped handle of elliptical section, joined by an exact boolean union."""
    segments = 64
    profile = [
        (0.0, 0.0), (0.036, 0.0), (0.0395, 0.0008), (0.041, 0.003),
        (0.041, 0.030), (0.041, 0.060), (0.041, 0.0925),
        (0.0407, 0.0944), (0.0395, 0.095), (0.0383, 0.0944), (0.038, 0.0925),
        (0.038, 0.060), (0.038, 0.030), (0.0378, 0.0095), (0.036, 0.0073), (0.0, 0.007),
    ]
    verts, faces = revolve(profile, segments)
    cup = mesh_object("mug", verts, faces)
    path = []
    steps = 24
    for i in range(steps + 1):
        t = -math.pi / 2 + math.pi * i / steps
        path.append((0.0385 + 0.030 * math.cos(t), 0.0, 0.050 + 0.028 * math.sin(t)))
    hv, hf = tube(path, 0.0065, 0.0045, 20)
    handle = mesh_object("handle", hv, hf)
    union(cup, handle)
    return cup


def vase_radius(z):
    """The vase's outer radius at height z (a foot, a wide belly, a narrow neck, a flared lip),
    a cosine-eased curve through control points."""
    pts = [(0.0, 0.034), (0.015, 0.042), (0.065, 0.060), (0.115, 0.040), (0.150, 0.020), (0.172, 0.027)]
    for (z0, r0), (z1, r1) in zip(pts, pts[1:]):
        if z <= z1:
            t = (z - z0) / (z1 - z0)
            w = 0.5 - 0.5 * math.cos(math.pi * t)
            return r0 + (r1 - r0) * w
    return pts[-1][1]


def make_vase():
    """A turned vase 176 mm tall, closed at the top by a shallow dish inside its lip (so that
    every part of its surface can be seen from above; a deep neck would be unobservable)."""
    profile = [(0.0, 0.0), (0.031, 0.0), (0.0335, 0.0012)]
    n = 28
    for i in range(1, n + 1):
        z = 0.002 + (0.172 - 0.002) * i / n
        profile.append((vase_radius(z), z))
    profile += [(0.0272, 0.1742), (0.0262, 0.1757), (0.0248, 0.1760), (0.0236, 0.1748),
                (0.018, 0.1700), (0.009, 0.1682), (0.0, 0.1678)]
    verts, faces = revolve(profile, 48)
    return mesh_object("vase", verts, faces)


def make_dark_object():
    """A rounded box 130 × 90 mm whose top slopes from about 59 mm high at one end to 77 mm at
    the other (so that no view is the mirror of another), resting flat on the floor."""
    a, b, c = 0.065, 0.045, 0.035

    def shape(x, y, z):
        z = z + c  # rest on z = 0
        return (x, y, z * (1.0 + 0.16 * x / a))

    verts, faces = superellipsoid(a, b, c, 0.35, 0.35, 24, 56, shape)
    return mesh_object("dark_object", verts, faces)


def make_quarter_object():
    """A small bust-like figure: a rounded body 100 × 80 × 110 mm and a head of radius 36 mm set
    forward of its axis (164 mm tall in all), joined by an exact boolean union; strongly textured."""
    def body_shape(x, y, z):
        return (x, y, z + 0.055)

    bv, bf = superellipsoid(0.050, 0.040, 0.055, 0.6, 0.7, 24, 48, body_shape)
    body = mesh_object("figure", bv, bf)

    def head_shape(x, y, z):
        return (x, y - 0.010, z + 0.128)

    hv, hf = superellipsoid(0.036, 0.033, 0.036, 1.0, 1.0, 16, 32, head_shape)
    head = mesh_object("head", hv, hf)
    union(body, head)
    return body


SET_SPECS = {
    "white-mug": dict(
        what="a plain white glazed mug (turned shell with a handle, 95 mm tall) on a light table with small grey "
             "flecks (a terrazzo-like top), soft light",
        make=make_mug,
        object_material=("white_glaze", lambda: principled("white_glaze", (0.86, 0.86, 0.85), 0.25, 0.5)),
        floor=("light_speckled", lambda: speckled("light_speckled", (0.80, 0.80, 0.78), (0.60, 0.60, 0.60), 0.010, 0.55,
                                                   0.55), 1.6),
        light=dict(size=1.2, power=12.0, position=(0.45, -0.35, 1.0)),
        world=dict(color=(0.85, 0.86, 0.9), strength=0.38, gradient=False),
        exposure=0.0, max_bounces=2, focal_mm=30.0,
        elevation=(10.0, 60.0), distance=(0.27, 0.37), azimuth=None,
        props=dict(count=5, radius=(0.17, 0.24), footprint=(0.06, 0.10), height=0.02, brightness=1.0),
    ),
    "glossy-vase": dict(
        what="a glossy (specular, roughness 0.06) blue glazed vase, 176 mm tall, on a lightly textured table (small "
             "brown flecks on beige)",
        make=make_vase,
        object_material=("blue_gloss", lambda: principled("blue_gloss", (0.04, 0.13, 0.42), 0.06, 0.7, 0.6)),
        floor=("beige_speckled", lambda: speckled("beige_speckled", (0.60, 0.52, 0.42), (0.40, 0.32, 0.24), 0.010,
                                                   0.55, 0.6), 1.2),
        light=dict(size=0.6, power=14.0, position=(0.40, -0.30, 0.80)),
        world=dict(color=(0.55, 0.6, 0.7), strength=0.35, gradient=True),
        exposure=0.0, max_bounces=2, focal_mm=30.0,
        elevation=(10.0, 60.0), distance=(0.40, 0.54), azimuth=None,
        props=dict(count=5, radius=(0.20, 0.28), footprint=(0.07, 0.11), height=0.02, brightness=1.0),
    ),
    "dark-object": dict(
        what="a dark (albedo about 0.04), nearly textureless rounded box (130 × 90 mm, its top sloping) on a dark floor "
             "with small grey flecks",
        make=make_dark_object,
        object_material=("dark_matte", lambda: noise_color("dark_matte", (0.035, 0.035, 0.037),
                                                           (0.045, 0.045, 0.047), 30.0, 2.0, 0.45)),
        floor=("dark_speckled", lambda: speckled("dark_speckled", (0.055, 0.055, 0.058), (0.13, 0.13, 0.13), 0.010,
                                                 0.55, 0.7), 1.2),
        light=dict(size=0.6, power=10.0, position=(0.40, -0.30, 0.80)),
        world=dict(color=(0.55, 0.6, 0.7), strength=0.18, gradient=False),
        exposure=0.0, max_bounces=1, focal_mm=30.0,
        elevation=(10.0, 60.0), distance=(0.32, 0.44), azimuth=None,
        props=dict(count=5, radius=(0.18, 0.25), footprint=(0.06, 0.10), height=0.02, brightness=0.35),
    ),
    "quarter": dict(
        what="a strongly textured bust-like figure (100 × 83 × 164 mm) photographed over 90° of azimuth only",
        make=make_quarter_object,
        object_material=("patchwork", lambda: patchwork("patchwork", 0.5)),
        floor=("checker_noise", lambda: checker_noise("checker_noise", 12.0, (0.55, 0.5, 0.42), (0.25, 0.27, 0.3),
                                                       60.0, 0.6), 1.0),
        light=dict(size=0.5, power=14.0, position=(0.35, -0.45, 0.75)),
        world=dict(color=(0.55, 0.6, 0.7), strength=0.35, gradient=False),
        exposure=0.0, max_bounces=1, focal_mm=30.0,
        elevation=(10.0, 50.0), distance=(0.36, 0.48), azimuth=(-135.0, -45.0),
    ),
}


# --------------------------------------------------------------------------------------------
# Scene, cameras, rendering
# --------------------------------------------------------------------------------------------

def add_props(spec, seed):
    """Flat textured blocks (books, coasters, tiles) lying on the table around the object, as on a
    real desk: photogrammetry needs features off the table's plane (a plain object on a flat
    table gives only coplanar ones, from which Kiln's mapper cannot start), while the object
    itself stays as plain as the set wants. They are low enough never to hide the object from
    any camera of the set, and are not part of the ground truth or the masks."""
    props = spec.get("props")
    if not props:
        return [], []
    rng = random.Random(seed * 7919 + 17)  # separate from the cameras' generator
    # Plain cells, no grain: their corners are features enough, and the small sets stay small.
    mat = patchwork("prop_print", 0.55, props["brightness"], grain=0.0)
    objs, placed = [], []
    count = props["count"]
    for k in range(count):
        az = 2.0 * math.pi * (k + rng.uniform(0.2, 0.8)) / count
        r = rng.uniform(*props["radius"])
        sx, sy = rng.uniform(*props["footprint"]), rng.uniform(*props["footprint"])
        h = props["height"]
        turn = rng.uniform(0.0, math.pi)
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(r * math.cos(az), r * math.sin(az), h / 2.0))
        obj = bpy.context.active_object
        obj.name = f"prop{k}"
        # Scale the mesh itself, so that the texture's object coordinates stay in metres.
        obj.data.transform(Matrix.Diagonal((sx, sy, h, 1.0)))
        obj.rotation_euler = (0.0, 0.0, turn)
        obj.data.materials.append(mat)
        objs.append(obj)
        placed.append({"center": [round(r * math.cos(az), 4), round(r * math.sin(az), 4), round(h / 2.0, 4)],
                       "size_m": [round(sx, 4), round(sy, 4), h], "rotation_z_deg": round(math.degrees(turn), 2)})
    return objs, placed


def setup_world(spec):
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    world.use_nodes = True
    nt = world.node_tree
    bg = nt.nodes["Background"]
    bg.inputs["Strength"].default_value = spec["strength"]
    bg.inputs["Color"].default_value = (*spec["color"], 1.0)
    if spec["gradient"]:
        # Brighter towards the zenith, darker at the horizon: glossy reflections then change with
        # the view, as a real room's do.
        tex = nt.nodes.new("ShaderNodeTexCoord")
        sep = nt.nodes.new("ShaderNodeSeparateXYZ")
        ramp = nt.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].position = 0.0
        ramp.color_ramp.elements[0].color = (0.25, 0.24, 0.22, 1.0)
        ramp.color_ramp.elements[1].position = 0.6
        ramp.color_ramp.elements[1].color = (0.9, 0.95, 1.05, 1.0)
        nt.links.new(tex.outputs["Generated"], sep.inputs["Vector"])
        nt.links.new(sep.outputs["Z"], ramp.inputs["Fac"])
        nt.links.new(ramp.outputs["Color"], bg.inputs["Color"])
    return world


def add_area_light(spec, target):
    data = bpy.data.lights.new("key", "AREA")
    data.shape = "SQUARE"
    data.size = spec["size"]
    data.energy = spec["power"]
    obj = bpy.data.objects.new("key", data)
    obj.location = spec["position"]
    direction = Vector(target) - Vector(spec["position"])
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    bpy.context.scene.collection.objects.link(obj)
    return obj


def look_at(position, target):
    """Camera-to-world matrix of a camera at `position` looking at `target` with no roll
    (Blender's camera frame: looks along -Z, +Y up)."""
    forward = (Vector(target) - Vector(position)).normalized()
    rot = forward.to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return Matrix.Translation(Vector(position)) @ rot


def camera_views(n, spec, rng, center, aim_jitter):
    """`n` views, consecutive ones neighbours: a jittered spiral over the whole azimuth (rising
    in elevation), or, with an azimuth range, rows of elevation swept back and forth across it."""
    el_lo, el_hi = spec["elevation"]
    d_lo, d_hi = spec["distance"]
    views = []
    if spec["azimuth"] is None:
        turns = max(1, n // 20)
        step = 360.0 * turns / n
        for i in range(n):
            t = (i + 0.5) / n
            az = 360.0 * turns * t + rng.uniform(-step / 3, step / 3)
            el = el_lo + (el_hi - el_lo) * t + rng.uniform(-3.0, 3.0)
            views.append((min(max(el, el_lo), el_hi), az % 360.0))
    else:
        az_lo, az_hi = spec["azimuth"]
        rows = max(1, round(n / 8))
        per_row = [n // rows + (1 if r < n % rows else 0) for r in range(rows)]
        for r, count in enumerate(per_row):
            el = el_lo + (el_hi - el_lo) * (r + 0.5) / rows
            for k in range(count):
                t = (k + 0.5) / count
                if r % 2:
                    t = 1.0 - t
                az = az_lo + (az_hi - az_lo) * t + rng.uniform(-2.0, 2.0)
                views.append((el + rng.uniform(-2.0, 2.0), min(max(az, az_lo), az_hi)))
    out = []
    for el, az in views:
        dist = rng.uniform(d_lo, d_hi)
        aim = Vector(center) + Vector([rng.uniform(-aim_jitter, aim_jitter) for _ in range(3)])
        e, a = math.radians(el), math.radians(az)
        pos = aim + dist * Vector((math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)))
        out.append(dict(elevation=el, azimuth=az, distance=dist, matrix=look_at(pos, aim)))
    return out


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    ap = argparse.ArgumentParser(prog="make_set.py")
    ap.add_argument("--set", required=True, choices=SETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--views", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--jpeg-quality", type=int, default=92)
    ap.add_argument("--max-bounces", type=int, default=None, help="light bounces (default: the set's own)")
    ap.add_argument("--check-script", default=None, help="the shared check_dataset.py, run on the result")
    ap.add_argument("--check-python", default="python3", help="a Python with numpy and Pillow for the check")
    ap.add_argument("--docs-only", action="store_true",
                    help="rewrite transforms.json, gt.json, gt_mesh.ply and README.md of a set rendered with the "
                         "same arguments, without rendering again (the renders are deterministic)")
    args = ap.parse_args(argv)
    spec = dict(SET_SPECS[args.set])
    if args.max_bounces is not None:
        spec["max_bounces"] = args.max_bounces
    started = time.time()

    # An empty scene (factory startup has a cube, a light and a camera).
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene

    obj = spec["make"]()
    obj.name = args.set
    verts, tris = triangulate_and_check(obj)
    smooth(obj)
    obj_mat_name, obj_mat = spec["object_material"]
    obj.data.materials.clear()
    obj.data.materials.append(obj_mat())
    lo = [min(v[k] for v in verts) for k in range(3)]
    hi = [max(v[k] for v in verts) for k in range(3)]
    if abs(lo[2]) > 1e-6:
        raise SystemExit(f"{args.set}: the object does not rest on z = 0 (lowest point {lo[2]})")
    center = [(lo[k] + hi[k]) / 2 for k in range(3)]
    extent = [hi[k] - lo[k] for k in range(3)]

    floor_mat_name, floor_mat, floor_size = spec["floor"]
    bpy.ops.mesh.primitive_plane_add(size=floor_size, location=(0.0, 0.0, 0.0))
    floor = bpy.context.active_object
    floor.name = "floor"
    floor.data.materials.append(floor_mat())
    props, spec["props_placed"] = add_props(spec, args.seed)
    light = add_area_light(spec["light"], (0.0, 0.0, 0.03))
    setup_world(spec["world"])

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = spec["focal_mm"]
    cam_data.sensor_width = SENSOR_WIDTH_MM
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start = 0.01
    cam_data.clip_end = 50.0
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam

    import _cycles  # Blender's Cycles module: tells whether OpenImageDenoise was built in
    oidn = bool(getattr(_cycles, "with_openimagedenoise", False))
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = ADAPTIVE_THRESHOLD
    scene.cycles.seed = args.seed
    scene.cycles.max_bounces = spec["max_bounces"]
    scene.cycles.diffuse_bounces = spec["max_bounces"]
    scene.cycles.glossy_bounces = spec["max_bounces"]
    scene.cycles.transmission_bounces = 0
    scene.cycles.volume_bounces = 0
    scene.cycles.transparent_max_bounces = 0
    scene.cycles.caustics_reflective = False
    scene.cycles.caustics_refractive = False
    scene.cycles.blur_glossy = 1.0
    scene.cycles.sample_clamp_indirect = 10.0
    scene.cycles.use_denoising = oidn
    if oidn:
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.render.use_persistent_data = True
    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.dither_intensity = 0.0
    # No metadata in the files (dates, render times): the same set renders to the same bytes.
    for stamp in [p for p in dir(scene.render) if p.startswith("use_stamp")]:
        setattr(scene.render, stamp, False)
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = spec["exposure"]
    scene.view_settings.gamma = 1.0
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.quality = args.jpeg_quality

    rng = random.Random(args.seed)
    aim_jitter = 0.1 * max(extent)
    views = camera_views(args.views, spec, rng, center, aim_jitter)

    out = os.path.abspath(args.out)
    if args.docs_only:
        if not os.path.isdir(os.path.join(out, "images")):
            raise SystemExit(f"--docs-only: {out} has no images/ to document")
    else:
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(os.path.join(out, "images"))
        os.makedirs(os.path.join(out, "masks"))
    write_ply(os.path.join(out, "gt_mesh.ply"), verts, tris)

    names = [f"{i:04d}" for i in range(len(views))]
    for i, view in enumerate([] if args.docs_only else views):
        cam.matrix_world = view["matrix"]
        scene.render.filepath = os.path.join(out, "images", names[i] + ".jpg")
        bpy.ops.render.render(write_still=True)
        strip_metadata(scene.render.filepath)
        print(f"[{args.set}] image {i + 1}/{len(views)} {time.time() - started:.0f} s", flush=True)
    colour_seconds = time.time() - started

    # Mask pass: the object emits white, the floor black, nothing else lights the scene; a box
    # filter and no view transform make each edge pixel's value its object coverage.
    obj.data.materials[0] = emission("mask_object", (1.0, 1.0, 1.0))
    floor.data.materials[0] = emission("mask_floor", (0.0, 0.0, 0.0))
    for prop in props:
        prop.data.materials[0] = floor.data.materials[0]
    light.hide_render = True
    scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.cycles.samples = MASK_SAMPLES
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0
    scene.cycles.pixel_filter_type = "BOX"
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.exposure = 0.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "BW"
    scene.render.image_settings.color_depth = "8"
    scene.render.image_settings.compression = 100
    for i, view in enumerate([] if args.docs_only else views):
        cam.matrix_world = view["matrix"]
        scene.render.filepath = os.path.join(out, "masks", names[i] + ".png")
        bpy.ops.render.render(write_still=True)
        strip_metadata(scene.render.filepath)
    mask_seconds = time.time() - started - colour_seconds

    write_transforms(out, args, spec, views, names)
    write_gt(out, args, spec, oidn, lo, hi, center, extent, verts, tris, obj_mat_name, floor_mat_name, floor_size)
    check = run_check(out, args, len(views))
    write_readme(out, args, spec, oidn, extent, verts, tris, obj_mat_name, floor_mat_name, floor_size, check)
    print(f"[{args.set}] {len(views)} views {args.width}x{args.height}: colour {colour_seconds:.0f} s, "
          f"masks {mask_seconds:.0f} s, total {time.time() - started:.0f} s; check "
          f"{'ok' if check and check.get('ok') else 'NOT ok' if check else 'not run'}", flush=True)
    if check is not None and not check.get("ok"):
        raise SystemExit(f"{args.set}: check_dataset.py failed on {out}")


def fl_px(args, spec):
    return args.width * spec["focal_mm"] / SENSOR_WIDTH_MM


def write_transforms(out, args, spec, views, names):
    fl = fl_px(args, spec)
    frames, train, test = [], [], []
    for i, (view, name) in enumerate(zip(views, names)):
        path = f"images/{name}.jpg"
        split = "test" if i % TEST_EVERY == 0 else "train"
        (test if split == "test" else train).append(path)
        m = view["matrix"]
        frames.append({
            "file_path": path,
            "transform_matrix": [[float(m[r][c]) for c in range(4)] for r in range(4)],
            "split": split,
            "elevation_deg": round(view["elevation"], 3),
            "azimuth_deg": round(view["azimuth"], 3),
            "distance_m": round(view["distance"], 4),
        })
    meta = {
        "camera_model": "OPENCV",
        "fl_x": fl, "fl_y": fl, "cx": args.width / 2.0, "cy": args.height / 2.0,
        "w": args.width, "h": args.height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "camera_angle_x": 2.0 * math.atan(args.width / (2.0 * fl)),
        "camera_angle_y": 2.0 * math.atan(args.height / (2.0 * fl)),
        "frames": frames,
        "train_filenames": train,
        "val_filenames": test,
        "test_filenames": test,
    }
    with open(os.path.join(out, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)


def write_gt(out, args, spec, oidn, lo, hi, center, extent, verts, tris, obj_mat, floor_mat, floor_size):
    light = spec["light"]
    gt = {
        "object": args.set,
        "description": spec["what"],
        "units": "metres",
        "world_up": [0, 0, 1],
        "ground_plane": {"z": 0.0, "size_m": floor_size, "center": [0.0, 0.0, 0.0], "material": floor_mat},
        "object_aabb": {"min": lo, "max": hi},
        "object_center": center,
        "object_extent": extent,
        "object_size_m": max(extent),
        "scale": 1.0,
        "scale_note": "modelled at its real size in metres by make_set.py; no scale applied",
        "object_material": obj_mat,
        "props": {"note": "flat textured blocks on the table around the object (not in gt_mesh.ply nor in the "
                          "masks), for features off the table's plane; material prop_print",
                  "blocks": spec["props_placed"]} if spec["props_placed"] else None,
        "gt_mesh": {"file": "gt_mesh.ply", "vertices": len(verts), "triangles": len(tris),
                    "closed": True, "note": "the object alone, including its base resting on z = 0"},
        "camera_convention": "transform_matrix is camera-to-world; camera looks along -Z, +X right, +Y up "
                             "(OpenGL/Blender/nerfstudio); pinhole, no distortion, principal point at image centre",
        "test_split": f"frame i is test when i % {TEST_EVERY} == 0",
        "render": {
            "blender_version": bpy.app.version_string,
            "engine": "Cycles (CPU)",
            "samples_max": args.samples,
            "adaptive_sampling_threshold": ADAPTIVE_THRESHOLD,
            "max_bounces": spec["max_bounces"],
            "denoise_mode": "cycles-oidn" if oidn else "none",
            "denoising": "Cycles' OpenImageDenoise" if oidn else
                         "none: this Blender is built without OpenImageDenoise, so more samples instead",
            "view_transform": "Standard (sRGB, clipped)",
            "exposure_stops": spec["exposure"],
            "resolution": [args.width, args.height],
            "focal_mm": spec["focal_mm"],
            "sensor_width_mm": SENSOR_WIDTH_MM,
            "jpeg_quality": args.jpeg_quality,
            "light": {"type": "area (square)", "size_m": light["size"], "power_W": light["power"],
                      "position": list(light["position"]), "aimed_at": [0, 0, 0.03]},
            "world": {"color": list(spec["world"]["color"]), "strength": spec["world"]["strength"],
                      "zenith_gradient": spec["world"]["gradient"]},
            "seed": args.seed,
            "views": args.views,
            "elevation_deg": list(spec["elevation"]),
            "azimuth_deg": list(spec["azimuth"]) if spec["azimuth"] else [0.0, 360.0],
            "distance_m": list(spec["distance"]),
            "aim_jitter_m": round(0.1 * max(extent), 5),
            "mask_pass": f"object emits white, everything else black, {MASK_SAMPLES} samples, box filter, "
                         "no view transform (edge values are coverage)",
        },
    }
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump(gt, f, indent=1)


def run_check(out, args, n):
    if not args.check_script:
        return None
    frames = ["0", str(n // 2 + 1)]
    cmd = [args.check_python, args.check_script, out, "--frames", *frames]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"check_dataset.py gave no report:\n{proc.stdout}\n{proc.stderr}")
    report["frames_checked"] = [int(f) for f in frames]
    return report


def write_readme(out, args, spec, oidn, extent, verts, tris, obj_mat, floor_mat, floor_size, check):
    light = spec["light"]
    world = spec["world"]
    fl = fl_px(args, spec)
    n = args.views
    n_test = len(range(0, n, TEST_EVERY))
    if spec["azimuth"] is None:
        views_line = (f"a jittered spiral of {max(1, n // 20)} turn(s) over the upper hemisphere around the object: "
                      f"elevation {spec['elevation'][0]:.0f}–{spec['elevation'][1]:.0f}°, full 360° azimuth")
    else:
        views_line = (f"rows of elevation {spec['elevation'][0]:.0f}–{spec['elevation'][1]:.0f}° swept back and forth "
                      f"over azimuth {spec['azimuth'][0]:.0f}° to {spec['azimuth'][1]:.0f}° only (90°: one side "
                      f"of the object; the other three quarters are never seen)")
    lines = [
        f"# {args.set} — a hard synthetic capture set rendered with Blender Cycles",
        "",
        f"{n} views of {spec['what']}, with exact camera poses, a ground-truth mesh and object silhouettes. "
        "Made for Kiln's issue 17 by `scripts/hard_sets/make_set.py`; the object and every material are "
        "modelled procedurally in that script (nothing downloaded).",
        "",
        "## Object",
        "",
        f"`{args.set}`: {' '.join(spec['make'].__doc__.split())}",
        "",
        f"Size (x, y, z extent): {extent[0] * 1000:.1f}, {extent[1] * 1000:.1f}, {extent[2] * 1000:.1f} mm "
        f"(largest {max(extent) * 1000:.1f} mm). Closed surface, {len(verts)} vertices, {len(tris)} triangles. "
        f"Material `{obj_mat}` (procedural Cycles material, in object coordinates where textured: no UVs).",
        "",
        "## Scene and rendering",
        "",
        f"- Blender {bpy.app.version_string}, Cycles (CPU), {args.samples} samples per pixel max (adaptive, threshold "
        f"{ADAPTIVE_THRESHOLD}), {spec['max_bounces']} light bounce(s), no caustics, glossy blur 1.0, indirect clamp 10.",
        "- Denoising: " + ("Cycles' OpenImageDenoise." if oidn else
                           "none (this Blender is built without OpenImageDenoise), so more samples; the renders keep "
                           "a little noise, as a camera's photos do."),
        f"- Colour: linear render -> Standard (sRGB, clipped), exposure {spec['exposure']} stops, no dither; JPEG "
        f"quality {args.jpeg_quality}.",
        f"- Light: one square area light, {light['size']} m, {light['power']} W, at {tuple(light['position'])} m "
        f"aimed at (0, 0, 0.03); plus a world colour {world['color']} at strength {world['strength']}"
        + (" brightening towards the zenith (so glossy reflections change with the view)" if world["gradient"] else "")
        + " (soft fill, also the visible background).",
        f"- Ground: {floor_size} m square plane at z = 0 with procedural material `{floor_mat}`.",
    ] + ([
        f"- Props: {len(spec['props_placed'])} flat textured blocks ({spec['props']['height'] * 1000:.0f} mm thick, "
        f"{spec['props']['footprint'][0] * 100:.0f}–{spec['props']['footprint'][1] * 100:.0f} cm wide) lying on the "
        f"table {spec['props']['radius'][0] * 100:.0f}–{spec['props']['radius'][1] * 100:.0f} cm from the object "
        "(`gt.json` `props`), as books or coasters on a real desk: with a plain object on a flat table every "
        "feature is coplanar, and Kiln's mapper starts only from pairs with features off one plane. They are "
        "too low to hide the object from any camera, and are neither in `gt_mesh.ply` nor in the masks.",
    ] if spec["props_placed"] else []) + [

        f"- Camera: {args.width}×{args.height}, focal {spec['focal_mm']} mm on a {SENSOR_WIDTH_MM} mm wide sensor "
        f"(fl_x = fl_y = {fl:.4f} px), principal point at the image centre, no distortion.",
        f"- Views: {views_line}; distance {spec['distance'][0]}–{spec['distance'][1]} m (random), aimed at the "
        f"object's bounding-box centre plus a random offset of up to ±{0.1 * max(extent) * 1000:.0f} mm per axis, "
        f"no roll. Consecutive frames are neighbours. Random seed {args.seed} (cameras and Cycles).",
        "",
        "## Files",
        "",
        f"- `images/NNNN.jpg` — {n} renders, numbered from 0000.",
        "- `transforms.json` — nerfstudio format (see conventions).",
        "- `gt_mesh.ply` — the object only (no ground), binary little-endian PLY, float32 x y z + triangle list, in "
        "the same world frame and units (metres) as the cameras. It includes the base the object rests on, which "
        "no photo sees.",
        "- `gt.json` — object axis-aligned bounding box (`object_aabb`), centre, extent, `object_size_m` (the "
        "largest extent), ground plane height (`ground_plane.z`), and all render settings.",
        f"- `masks/NNNN.png` — object silhouettes (255 = object, 0 = ground/background), rendered by Cycles from the "
        f"same cameras in a second pass (object emitting white, everything else black, {MASK_SAMPLES} samples, box "
        "filter, no view transform: an edge pixel's value is the object's coverage of it). They are deliberately "
        "*not* referenced from `transforms.json`.",
        "",
        "## Conventions",
        "",
        "- World: Blender's frame, right-handed, **+Z up**, units **metres**. Ground plane is z = 0; the object "
        "rests on it.",
        "- `frames[].transform_matrix`: 4×4 **camera-to-world**, row-major (list of rows). Camera frame is "
        "OpenGL/Blender/nerfstudio: the camera looks along **−Z**, +X right, **+Y up**. No scale.",
        "- Projection of a world point p: (x, y, z) = inverse(transform_matrix)·p, then u = fl_x·x/(−z) + cx, "
        "v = cy − fl_y·y/(−z), in pixels with the origin at the top-left corner of the top-left pixel.",
        "- `camera_model` is \"OPENCV\" with k1 = k2 = p1 = p2 = 0 (pure pinhole).",
        f"- Split: frame i is **test** when i % {TEST_EVERY} == 0 ({n_test} test, {n - n_test} train). Given both as "
        "`frames[].split` and as top-level `train_filenames` / `test_filenames` (`val_filenames` = test list).",
        "- Extra per-frame keys `elevation_deg`, `azimuth_deg`, `distance_m` are informational.",
        "",
        "## Regenerating",
        "",
        "```",
        f"blender -b --factory-startup -P scripts/hard_sets/make_set.py -- --set {args.set} --out DIR "
        f"--views {n} --width {args.width} --height {args.height} --samples {args.samples} --seed {args.seed} "
        f"--jpeg-quality {args.jpeg_quality}",
        "```",
        "or `scripts/hard_sets.sh full|ci` for every set at the shared or the CI size (Debian's `blender` package; "
        "CI does not need it: the CI-sized sets are committed under `engine/fixtures/hard/`).",
        "",
        "## Convention check",
        "",
    ]
    if check is None:
        lines.append("Not run (no `--check-script` given).")
    else:
        frames = check["frames_checked"]
        lines += [
            f"`python3 check_dataset.py . --frames {' '.join(map(str, frames))}` (the shared "
            "`datasets/check_dataset.py`) projects every `gt_mesh.ply` vertex through the `transforms.json` cameras "
            "with the convention above and compares with `masks/`:",
            "",
            "| frame | vertices in image | on the silhouette (±1 px) | IoU of rasterised projection vs mask "
            "| same with OpenCV axes (wrong on purpose) |",
            "|---|---|---|---|---|",
        ]
        for c in check.get("convention_check", []):
            ok, wrong = c["opengl"], c["opencv_wrong"]
            wrong_text = (f"{wrong['vertices_in_image']} vertices in front of the camera, IoU {wrong['iou']}"
                          if wrong["vertices_in_image"] else "0 vertices in front of the camera, IoU 0")
            lines.append(f"| {c['frame']:04d} | {ok['vertices_in_image']} / {ok.get('vertices_total', 0)} | "
                         f"{ok['on_silhouette'] * 100:.1f} % | {ok['iou']:.3f} | {wrong_text} |")
        lines += [
            "",
            f"{check.get('frames', 0) - check.get('missing_files', 0)} of {check.get('frames', 0)} `file_path`s "
            f"exist at {args.width}×{args.height} (size mismatches: {len(check.get('size_mismatch', []))}); "
            f"{check.get('train', 0)} train / {check.get('test', 0)} test frames; the check says "
            f"**{'ok' if check.get('ok') else 'NOT ok'}**.",
        ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
