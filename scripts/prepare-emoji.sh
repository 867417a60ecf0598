#!/bin/sh
# prepare-emoji.sh OUT [PACKAGE[@VERSION]] [emojiprep flags...]
#
# Installs an emoji-datasource npm package into a temporary folder and writes its
# images (flattened onto white, 64×64) with captions as an image-caption folder:
#   scripts/prepare-emoji.sh data/emoji                       # the base model's data
#   scripts/prepare-emoji.sh data/twemoji emoji-datasource-twitter@16.0.0 --limit 40 --no-skin-tones
# Licenses: the package (MIT, Cal Henderson); Noto Emoji artwork Apache-2.0 (Google);
# Twemoji artwork CC-BY-4.0 (Twitter, Inc. and contributors). See DATA-LICENSES.md.
set -eu
out=${1:?usage: prepare-emoji.sh OUT [PACKAGE[@VERSION]] [emojiprep flags...]}
pkg=${2:-emoji-datasource-google@16.0.0}
[ $# -ge 2 ] && shift 2 || shift 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm install --silent --no-save --no-audit --no-fund --prefix "$tmp" "$pkg"
name=${pkg%@*}
cd "$(dirname "$0")/.."
go run ./tools/emojiprep --package "$tmp/node_modules/$name" --out "$out" "$@"
