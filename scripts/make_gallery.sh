#!/usr/bin/env bash
# Make the README gallery with jaxstyle's own commands: small stylized results of bundled example pairs, the inputs
# as thumbnails, and the markdown table (printed on stdout) to paste into the README.
#
# Usage: scripts/make_gallery.sh [WEIGHTS]    (WEIGHTS: a converted .npz, default: random)
# Environment: PYTHON (default .venv/bin/python), SIZE (long side, default 192), ITERATIONS (default 100).
#
# With random weights (all this project's CI machine has) the results are texture-like, not meaningful art; the
# table says so. Re-run with real weights (weights/vgg19.npz) for the real thing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works from a checkout without `pip install -e .`
WEIGHTS=${1:-random}
SIZE=${SIZE:-192}
ITERATIONS=${ITERATIONS:-100}
OUT=docs/gallery
EX=examples/images
mkdir -p "$OUT"

if [ "$WEIGHTS" = random ]; then
  LABEL="random VGG19 weights — texture-like, not meaningful art"
else
  LABEL="VGG19 weights $(basename "$WEIGHTS")"
fi

# name  content  style  extra options
PAIRS=(
  "chelsea-starry_night chelsea starry_night"
  "astronaut-the_scream astronaut the_scream"
  "rocket-matisse rocket woman-with-hat-matisse --original-colors luminance"
)

thumb() {  # thumb SRC DST: the input at 128 px on its long side, through jaxstyle.images
  "$PYTHON" -c 'import sys; from jaxstyle import images
images.save_image(sys.argv[2], images.resize_long_side(images.load_image(sys.argv[1]), 128), quality=90)' "$1" "$2"
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

echo "Stylized at ${SIZE} px, ${ITERATIONS} L-BFGS iterations, ${LABEL}. Made by \`scripts/make_gallery.sh\`."
echo
echo "| content | style | result | options |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ -f "$OUT/chelsea-starry_night.gif" ]; then
  echo
  echo "The optimisation, every 10 iterations: ![progress]($OUT/chelsea-starry_night.gif)"
fi
du -ch "$OUT"/* | tail -1 >&2
