#!/usr/bin/python3
"""The instance figure of docs/results.md: one held-out scene and the overlays of the three instance
methods side by side (each `ostrov predict` output, upscaled x2 with nearest neighbours).

    /usr/bin/python3 scripts/instance_figure.py IMAGE DC_DIR DWT_DIR MRCNN_DIR OUT.png

IMAGE is the input scene; each *_DIR is an `ostrov predict --output` folder holding
<stem>_overlay.png for that image. Needs Pillow (python3-pil).
"""
import os
import sys

from PIL import Image, ImageDraw


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    image, dirs, out = sys.argv[1], sys.argv[2:5], sys.argv[5]
    stem = os.path.splitext(os.path.basename(image))[0]
    titles = ["input", "DeepColoring", "Deep Watershed", "Mask R-CNN-style"]
    panels = [Image.open(image).convert("RGB")]
    for d in dirs:
        panels.append(Image.open(os.path.join(d, stem + "_overlay.png")).convert("RGB"))
    scale, band = 2, 18
    w, h = panels[0].size
    sheet = Image.new("RGB", (len(panels) * w * scale, h * scale + band), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        sheet.paste(panel.resize((w * scale, h * scale), Image.NEAREST), (i * w * scale, band))
        draw.text((i * w * scale + 4, 3), title, fill="black")
    tmp = out + ".tmp.png"
    sheet.save(tmp)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
