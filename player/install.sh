#!/bin/sh
# Installs the /watch page's players from npm, pinned in package-lock.json, and copies the files
# the server serves (http.player_dir) with their licences to dist/. Run by `make player` and by
# the Dockerfile.
set -eu
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
rm -rf dist
mkdir dist
# mpegts.js.LICENSE.txt: the licences of what mpegts.js bundles.
cp node_modules/hls.js/dist/hls.min.js node_modules/mpegts.js/dist/mpegts.js \
    node_modules/mpegts.js/dist/mpegts.js.LICENSE.txt dist/
cp node_modules/hls.js/LICENSE dist/hls.js.LICENSE
cp node_modules/mpegts.js/LICENSE dist/mpegts.js.LICENSE
touch dist/.installed
