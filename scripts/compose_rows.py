#!/usr/bin/env python3
"""Stacks PNG images into one labelled figure (nearest upscaling), for README pictures.

usage: compose_rows.py -o out.png [--scale 4] "label=path.png" ...
"""
import argparse

from PIL import Image, ImageDraw


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--label-width", type=int, default=150)
    ap.add_argument("rows", nargs="+", help="label=path.png")
    a = ap.parse_args()
    rows = []
    for r in a.rows:
        label, path = r.split("=", 1)
        im = Image.open(path).convert("RGB")
        rows.append((label, im.resize((im.width * a.scale, im.height * a.scale), Image.NEAREST)))
    w = a.label_width + max(im.width for _, im in rows)
    h = sum(im.height + 4 for _, im in rows)
    out = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for label, im in rows:
        draw.text((6, y + im.height // 2 - 6), label, fill="black")
        out.paste(im, (a.label_width, y))
        y += im.height + 4
    out.save(a.output)


if __name__ == "__main__":
    main()
