"""docs.quickstart: follows the README's quickstarts literally on small datasets made by hand.

For each "### Quickstart: ..." section of README.md this takes the section's JSON config and its
`sh` block of commands, makes a tiny dataset of drawn shapes in the layout the section
describes (folder of images + masks, ImageFolder, COCO JSON), writes the config under its
README name beside `mydata/`, and runs the commands as written with `ostrov` standing for the
built CLI. Only the training length
and sizes are shrunk (epochs, image size, widths), so the test takes seconds; every command,
path and key is the README's. Checks: each command exits 0, `eval` prints its task's metric,
`predict` writes its files.

Usage: quickstart.py OSTROV_CLI README.md WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

cli, readme, work = sys.argv[1:4]
text = open(readme, encoding="utf-8").read()


def section(title):
    start = text.index("### Quickstart: " + title)
    end = text.find("\n### ", start + 4)
    return text[start:end]


def blocks(body, language):
    return re.findall(r"```" + language + r"\n(.*?)```", body, re.S)


rng = np.random.default_rng(0)


def shapes_image(size, items):
    """A noisy RGB image with filled shapes: items = [(kind, label, box)] -> (image, mask)."""
    w, h = size
    pixels = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    image = Image.fromarray(pixels)
    mask = Image.new("L", size, 0)
    draw, mdraw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    colours = [(230, 60, 40), (40, 200, 90), (60, 90, 230), (220, 200, 40), (200, 60, 200)]
    for kind, label, box in items:
        fill = colours[label % len(colours)]
        if kind == "circle":
            draw.ellipse(box, fill=fill)
            mdraw.ellipse(box, fill=label)
        else:
            draw.rectangle(box, fill=fill)
            mdraw.rectangle(box, fill=label)
    return image, mask


def random_box(size, lo=14, hi=30):
    w, h = size
    s = int(rng.integers(lo, hi))
    x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
    return [x, y, x + s - 1, y + s - 1]


def photos(folder):
    os.makedirs(folder)
    for i, size in enumerate([(90, 70), (64, 64)]):
        image, _ = shapes_image(size, [("circle", 1, random_box(size)), ("square", 2, random_box(size))])
        image.save(os.path.join(folder, f"photo{i}." + ("jpg" if i == 0 else "png")))


def run(commands, cwd):
    """The README's commands, `ostrov` being the built CLI. Returns each command's stdout."""
    outputs = []
    for line in commands.strip().splitlines():
        command = line.split("#")[0].strip()
        if not command:
            continue
        assert command.startswith("ostrov "), command
        print("$", command, flush=True)
        done = subprocess.run(["bash", "-c", 'ostrov() { "$OSTROV" "$@"; }; ' + command],
                              cwd=cwd, env=dict(os.environ, OSTROV=cli), text=True,
                              stdout=subprocess.PIPE)
        print(done.stdout, flush=True)
        if done.returncode != 0:
            sys.exit(f"README command failed with exit code {done.returncode}: {command}")
        outputs.append(done.stdout)
    return outputs


def config(body, shrink):
    configs = blocks(body, "json")
    assert configs, "no JSON config in the section"
    c = json.loads(configs[0])
    shrink(c)
    return c


def eval_output(outputs, key):
    for out in outputs:
        for line in out.splitlines():
            if line.startswith("{"):
                metrics = json.loads(line)
                if key in metrics:
                    print(f"eval: {key} = {metrics[key]}")
                    return metrics
    sys.exit(f"no eval output with {key}")


def expect_files(folder, names):
    for n in names:
        path = os.path.join(folder, n)
        if not os.path.isfile(path):
            sys.exit(f"predict did not write {path}: {sorted(os.listdir(folder))}")


def segmentation(root):
    body = section("segmentation")
    for split, count in (("train", 8), ("val", 4)):
        os.makedirs(f"{root}/mydata/{split}/images")
        os.makedirs(f"{root}/mydata/{split}/masks")
        for i in range(count):
            size = (96, 80)
            image, mask = shapes_image(size, [("circle", 1, random_box(size)), ("square", 2, random_box(size))])
            image.save(f"{root}/mydata/{split}/images/{i:04d}.jpg", quality=95)
            if i % 2:  # half of them as palette PNGs, the other half 8-bit greyscale
                mask = mask.convert("P")
                mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0, 0, 0] * 253)
            mask.save(f"{root}/mydata/{split}/masks/{i:04d}.png")
    photos(f"{root}/photos")

    def shrink(c):
        c["data"]["image_size"] = [64, 64]
        c["model"]["base_width"] = 4
        c["model"]["depth"] = 2
        c["train"].update(epochs=2, batch_size=4)
        c["train"]["schedule"]["warmup_steps"] = 1
    json.dump(config(body, shrink), open(f"{root}/seg.json", "w"), indent=1)
    outputs = run(blocks(body, "sh")[0], root)
    eval_output(outputs, "miou")
    expect_files(f"{root}/out", ["photo0.png", "photo0_overlay.png", "photo1.png"])


def classification(root):
    body = section("classification")
    for split, count in (("train", 8), ("val", 4)):
        for label, kind in ((1, "circle"), (2, "square")):
            folder = f"{root}/mydata/{split}/{'cat' if kind == 'circle' else 'dog'}"
            os.makedirs(folder)
            for i in range(count):
                image, _ = shapes_image((48, 48), [(kind, label, random_box((48, 48), 20, 40))])
                image.save(f"{folder}/{i:04d}.jpg")
    photos(f"{root}/photos")

    def shrink(c):
        c["data"]["image_size"] = [32, 32]
        c["train"].update(epochs=1, batch_size=4)
        c["train"]["schedule"]["warmup_steps"] = 1
    json.dump(config(body, shrink), open(f"{root}/cls.json", "w"), indent=1)
    outputs = run(blocks(body, "sh")[0], root)
    eval_output(outputs, "accuracy")
    expect_files(f"{root}/out", ["photo0.json", "photo1.json"])


def detection(root):
    body = section("detection and instance segmentation")
    c = json.loads(blocks(body, "json")[0])
    categories = c["data"]["num_classes"] - 1  # the README's "num_classes = categories + 1"
    for split, count in (("train", 8), ("val", 4), ("test", 2)):
        os.makedirs(f"{root}/mydata/{split}/images")
        coco = {"images": [], "annotations": [],
                "categories": [{"id": 10 + k, "name": f"shape{k}"} for k in range(categories)]}
        for i in range(count):
            size = (96, 96)
            items = [("square", int(rng.integers(0, categories)), random_box(size, 20, 40)) for _ in range(2)]
            image, _ = shapes_image(size, items)
            name = f"{i:04d}.png"
            image.save(f"{root}/mydata/{split}/images/{name}")
            coco["images"].append({"id": i + 1, "file_name": name, "width": 96, "height": 96})
            for kind, label, (x0, y0, x1, y1) in items:
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1,
                                            "category_id": 10 + label, "iscrowd": 0,
                                            "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                                            "area": (x1 - x0 + 1) * (y1 - y0 + 1)})
        json.dump(coco, open(f"{root}/mydata/{split}/instances.json", "w"))
    photos(f"{root}/photos")

    def shrink(c):
        c["model"]["image_size"] = 96
        c["train"].update(epochs=1, batch_size=4)
        c["train"]["schedule"]["warmup_steps"] = 1
    json.dump(config(body, shrink), open(f"{root}/det.json", "w"), indent=1)
    outputs = run(blocks(body, "sh")[0], root)
    eval_output(outputs, "map50")
    expect_files(f"{root}/out", ["photo0.json", "photo1.json"])


shutil.rmtree(work, ignore_errors=True)
for name, follow in (("segmentation", segmentation), ("classification", classification),
                     ("detection", detection)):
    print(f"== Quickstart: {name}", flush=True)
    follow(os.path.join(work, name))
print("every quickstart ran as the README writes it")
