# liverelay — the commands a user and CI need.
#   make run    start `liverelay standalone` (RTMP on :1935, HTTP on :8080)
#   make test   install test dependencies if missing, then run the whole test suite
#   make lint   rustfmt and clippy, as CI runs them
#   make fuzz   fuzz the RTMP server session (not part of `make test`)

CARGO ?= cargo
FUZZ_SECONDS ?= 60
APT_PACKAGES := ffmpeg

.PHONY: run build release test test-deps lint fmt fuzz clean

run:
	$(CARGO) run --release -p liverelay -- standalone $(ARGS)

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p liverelay

# Installs Debian packages the tests use as real peers, only when one is missing.
test-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: test-deps
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Coverage-guided fuzzing of the server session with cargo-fuzz (installed on first use).
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd services/rtmp/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run server_session -- -max_total_time=$(FUZZ_SECONDS)

clean:
	$(CARGO) clean
