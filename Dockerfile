# One image for every role: `liverelay standalone|ingest|edge`. Not built in CI here (no Docker
# engine); build it with `docker build -t liverelay .`.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# protoc comes from the protoc-bin-vendored build dependency; nothing else to install.
RUN cargo build --release --locked -p liverelay \
 && cp target/release/liverelay /liverelay

# The player page's scripts, from npm as pinned in player/package-lock.json.
FROM node:20-bookworm-slim AS player
COPY player /player
RUN sh /player/install.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin liverelay
COPY --from=build /liverelay /usr/local/bin/liverelay
COPY --from=player /player/dist /usr/share/liverelay/player
ENV LIVERELAY_HTTP__PLAYER_DIR=/usr/share/liverelay/player
USER 65532:65532
# RTMP, HTTP (health, metrics, API), relay gRPC (ingest).
EXPOSE 1935 8080 50051
# Writes nothing to disk: runs with a read-only root filesystem.
ENTRYPOINT ["/usr/local/bin/liverelay"]
CMD ["standalone"]
