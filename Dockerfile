# syntax=docker/dockerfile:1
#
# One image holds all three service binaries (order, stock, payment); the container's command
# picks the service, e.g. `docker run webshop:local stock`. Why one image, not three: the three
# share almost their whole dependency graph (librdkafka is compiled from C sources by rdkafka-sys
# and dominates the build), so one cargo build compiles it once, there is one dependency layer to
# cache, and one image to push or `kind load`. Each binary adds only a few MB.
#
# Dependency caching uses cargo-chef: the `planner` stage reduces the workspace to a recipe
# (manifests + lock file), `cook` builds only the dependencies from it, and that layer stays
# cached until Cargo.toml/Cargo.lock change. Source edits rebuild only the workspace crates.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
# librdkafka's bundled build needs a C toolchain, make, zlib and (to be safe) cmake/python3.
# Unpinned: the builder stage does not ship, and the base tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config zlib1g-dev libssl-dev python3 \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version "${CARGO_CHEF_VERSION}" --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p order -p stock -p payment
COPY . .
# Debug info off (42 MB -> 8 MB per binary); symbols stay, so backtraces keep function names.
RUN cargo build --release --locked -p order -p stock -p payment \
 && mkdir /out \
 && for bin in order stock payment; do strip --strip-debug -o "/out/$bin" "target/release/$bin"; done

FROM debian:bookworm-slim AS runtime
# No apt packages: the binaries need only glibc and zlib (both in the slim base), and the
# health check below talks HTTP through bash's /dev/tcp instead of curl.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin webshop
COPY --from=builder /out/ /usr/local/bin/
COPY --chmod=0755 deploy/compose/healthcheck.sh /usr/local/bin/healthcheck
ENV HTTP_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/healthcheck", "/health/ready"]
# No default command on purpose: run the image as `order`, `stock` or `payment`.
