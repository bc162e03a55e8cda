"""Render the calibration-mat set (issue 17, item 5) with Blender Cycles: a textured box of known
size standing on Kiln's printed A4 mat (`kiln mat --png`) on a textured table, photographed all
around. From the photos alone a job must find the mat and export the box in metres, +Y up.

    kiln mat --out /tmp/mat.pdf --png /tmp/mat.png --dpi 150
    blender -b --factory-startup -P scripts/hard_sets/make_mat_set.py -- --mat-png /tmp/mat.png \
        --out engine/fixtures/mat-box --views 20 --width 400 --height 300 --samples 24 --seed 7 \
        --jpeg-quality 80

Conventions as bunny-synth's (see make_set.py): +Z up, metres; nerfstudio `transforms.json`
(camera-to-world, OpenGL camera frame), `images/NNNN.jpg`, frame i in the test split when
i % 8 == 0. The mat lies on z = 0 centred at the origin, its +X along world +X and its +Y
(the sheet's top edge) along world +Y; the box stands on it at the centre, axis-aligned.
`gt.json` holds the box's size and the mat's layout. Deterministic (seeded cameras and Cycles).
"""
import argparse
import json
import math
import os
import random
import sys

import bpy
from mathutils import Matrix, Vector

SENSOR_WIDTH_MM = 36.0
FOCAL_MM = 30.0
TEST_EVERY = 8
# The A4 mat (kiln-mat-a4-v1) in metres.
MAT_W, MAT_H = 0.297, 0.210
# The box: 100 mm along x, 70 mm along y, 80 mm tall.
BOX = (0.100, 0.070, 0.080)


def material_noise(name, a, b, scale):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    bsdf = nt.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.7
    tex = nt.nodes.new("ShaderNodeTexNoise")
    tex.inputs["Scale"].default_value = scale
    tex.inputs["Detail"].default_value = 8.0
    coord = nt.nodes.new("ShaderNodeTexCoord")
    nt.links.new(coord.outputs["Object"], tex.inputs["Vector"])
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    # A narrow ramp: high contrast blotches SfM can match, not a grey average.
    ramp.color_ramp.elements[0].position = 0.42
    ramp.color_ramp.elements[0].color = (*a, 1.0)
    ramp.color_ramp.elements[1].position = 0.58
    ramp.color_ramp.elements[1].color = (*b, 1.0)
    nt.links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
    nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def material_image(name, path):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    bsdf = nt.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.9
    bsdf.inputs["Specular"].default_value = 0.2
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(path)
    tex.interpolation = "Cubic"
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def add_plane(name, size_x, size_y, z, mat):
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 0.0, z))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = (size_x, size_y, 1.0)
    obj.data.materials.append(mat)
    return obj


def look_at(position, target):
    forward = (Vector(target) - Vector(position)).normalized()
    rot = forward.to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return Matrix.Translation(Vector(position)) @ rot


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    ap = argparse.ArgumentParser(prog="make_mat_set.py")
    ap.add_argument("--mat-png", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--views", type=int, default=20)
    ap.add_argument("--width", type=int, default=400)
    ap.add_argument("--height", type=int, default=300)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jpeg-quality", type=int, default=80)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    add_plane("table", 1.2, 1.2, -0.0005, material_noise("table", (0.30, 0.18, 0.10), (0.80, 0.65, 0.45), 12.0))
    # The plane's default UVs map the image onto the whole sheet, its top edge at +Y.
    add_plane("mat", MAT_W, MAT_H, 0.0, material_image("mat", os.path.abspath(args.mat_png)))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, BOX[2] / 2))
    box = bpy.context.active_object
    box.scale = BOX
    box.data.materials.append(material_noise("box", (0.05, 0.15, 0.5), (0.95, 0.75, 0.2), 6.0))

    world = bpy.data.worlds.new("world")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.data.angle = math.radians(20.0)
    sun.rotation_euler = (math.radians(35.0), 0.0, math.radians(30.0))
    scene.collection.objects.link(sun)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = FOCAL_MM
    cam_data.sensor_width = SENSOR_WIDTH_MM
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start = 0.01
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.seed = args.seed
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 2
    scene.render.resolution_x = args.width
    scene.render.resolution_y = args.height
    scene.render.resolution_percentage = 100
    scene.render.dither_intensity = 0.0
    for stamp in [p for p in dir(scene.render) if p.startswith("use_stamp")]:
        setattr(scene.render, stamp, False)
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.quality = args.jpeg_quality

    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    fl = args.width * FOCAL_MM / SENSOR_WIDTH_MM
    frames = []
    for i in range(args.views):
        az = 360.0 * (i + 0.5) / args.views + rng.uniform(-4.0, 4.0)
        el = 40.0 + 25.0 * ((i * 7) % args.views) / args.views + rng.uniform(-2.0, 2.0)
        dist = rng.uniform(0.33, 0.37)
        aim = Vector((rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), 0.02))
        e, a = math.radians(el), math.radians(az)
        pos = aim + dist * Vector((math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)))
        m = look_at(pos, aim)
        cam.matrix_world = m
        name = f"{i:04d}"
        scene.render.filepath = os.path.join(args.out, "images", name + ".jpg")
        bpy.ops.render.render(write_still=True)
        frames.append({
            "file_path": f"images/{name}.jpg",
            "transform_matrix": [[float(m[r][c]) for c in range(4)] for r in range(4)],
            "split": "test" if i % TEST_EVERY == 0 else "train",
        })
    meta = {
        "camera_model": "OPENCV",
        "fl_x": fl, "fl_y": fl, "cx": args.width / 2.0, "cy": args.height / 2.0,
        "w": args.width, "h": args.height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": frames,
    }
    with open(os.path.join(args.out, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)
    gt = {
        "object": "box",
        "size_mm": {"x": BOX[0] * 1000, "y": BOX[1] * 1000, "z": BOX[2] * 1000},
        "mat_layout": "kiln-mat-a4-v1",
        "mat_frame": "mat centre at the world origin, mat +X = world +X, mat +Y = world +Y, mat +Z = world +Z",
        "blender": bpy.app.version_string,
        "command": " ".join(["make_mat_set.py"] + argv),
    }
    with open(os.path.join(args.out, "gt.json"), "w") as f:
        json.dump(gt, f, indent=1)


main()
