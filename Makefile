# liverelay — the commands a user and CI need.
#   make run    start `liverelay standalone` (RTMP on :1935, HTTP on :8080)
#   make test   install test dependencies if missing, then run the whole test suite
#   make lint   rustfmt and clippy, as CI runs them
#   make k8s    regenerate k8s/base from the Helm chart
#   make fuzz   fuzz each target in services/fuzz (`make test` only replays their corpus)
#   make fuzz-ci   the same for FUZZ_CI_SECONDS (20 s) per target: the short run for CI

CARGO ?= cargo
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 20
# Independent RTMP implementations for tests/interop.rs: GStreamer's rtmp2 and librtmp elements,
# with what their pipelines encode, mux and decode.
GST_PACKAGES := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
GST_ELEMENTS := rtmp2sink rtmp2src rtmpsink videotestsrc audiotestsrc x264enc h264parse aacparse \
	avenc_aac avdec_h264 flvmux flvdemux

.PHONY: run build release test test-deps test-chart k8s lint fmt fuzz fuzz-ci clean player browser-tests

# Python tools for the chart checks (real Helm engine, kubernetes-validate), in a venv.
VENV := .venv
$(VENV)/.installed: tests/chart/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/chart/requirements.txt
	touch $@

run: player
	$(CARGO) run --release -p liverelay -- standalone $(ARGS)

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p liverelay

# The /watch page's players (hls.js, mpegts.js), pinned in player/package-lock.json: installed
# from npm, then the files the server serves (http.player_dir) and their licences copied to
# player/dist (player/install.sh). Without npm the server still runs; the page then says its
# player is missing.
player: player/dist/.installed
player/dist/.installed: player/package.json player/package-lock.json player/install.sh
	@if command -v npm >/dev/null 2>&1; then sh player/install.sh; \
	else echo "npm not found: /watch pages will have no player (apt-get install nodejs npm)"; fi

# puppeteer-core (pinned; it never downloads a browser) for tests/browser.rs, which drives
# Debian's chromium.
browser-tests: tests/browser/node_modules/.installed
tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Installs Debian packages the tests use as real peers, only when one is missing.
test-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-server redis-tools"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v rtmpdump >/dev/null 2>&1 || missing="$$missing rtmpdump"; \
	command -v wget >/dev/null 2>&1 || missing="$$missing wget"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 && [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing="$$missing nginx libnginx-mod-rtmp"; \
	[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$$missing libnginx-mod-stream"; \
	( command -v gst-launch-1.0 && for e in $(GST_ELEMENTS); do gst-inspect-1.0 --exists $$e || exit 1; done ) >/dev/null 2>&1 \
		|| missing="$$missing $(GST_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(MAKE) --no-print-directory player browser-tests

test: test-deps $(VENV)/.installed
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory test-chart

# Renders and validates the Helm chart (uses target/debug/liverelay, built by cargo test).
test-chart: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/chart

# Regenerates the plain manifests in k8s/base from the chart.
k8s: $(VENV)/.installed
	$(VENV)/bin/python tests/chart/render.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Coverage-guided fuzzing with cargo-fuzz (installed on first use): every target of
# services/fuzz for FUZZ_SECONDS each, from its committed corpus and dictionary. New inputs go to
# services/fuzz/libfuzzer/corpus (not committed); `make test` replays the committed corpus.
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd services/fuzz && for t in $$($(CARGO) fuzz list --fuzz-dir libfuzzer); do \
		mkdir -p libfuzzer/corpus/$$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir libfuzzer $$t libfuzzer/corpus/$$t corpus/$$t \
			-- -dict=$(CURDIR)/services/fuzz/corpus/$$t.dict -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# A short, fixed-time real fuzz run of every target; `.ci/run` runs it after `make test`. Not
# part of `make test`: the first run installs cargo-fuzz and builds every target with
# sanitizers on a nightly-flagged toolchain, which takes minutes; `make test` instead replays
# the committed corpus and a fixed batch of mutations (`cargo test -p liverelay-fuzz`, seconds).
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

clean:
	$(CARGO) clean

# Side-by-side benchmark of liverelay vs nginx-rtmp (not part of `make test`; about 20 minutes).
# Writes bench/RESULTS.md and plots; BENCH_RUNS=1 or BENCH_QUICK=1 for shorter runs.
.PHONY: bench
bench:
	bash bench/run.sh
