# Sluice container image: the host binary plus the example plugins and pipelines.
#
#   docker build -t sluice .
#   docker run --rm sluice                                   # the quickstart: no broker needed
#   docker run --rm -v $PWD/my-pipelines:/etc/sluice/pipelines -v $PWD/my-plugins:/etc/sluice/plugins \
#     sluice run /etc/sluice/pipelines
#
# Without a Docker engine or a registry, scripts/image.sh builds this same file with podman
# (docs/deploy.md). glibc base on purpose: wasmtime's musl target is tier 3.

# The runtime stage's base: scripts/image.sh passes a Debian made with debootstrap where no
# registry serves this one.
ARG RUNTIME_BASE=debian:bookworm-slim
# Where the host binary and the plugins come from: `build` compiles them in the Rust image below;
# `prebuilt` takes them from target/image/ (scripts/image.sh fills it where that image cannot be
# pulled). Only the named stage is built.
ARG ARTIFACTS=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-unknown-unknown wasm32-wasip2 \
 && SLUICE_PROFILE=release CARGO_TARGET_DIR=/src/target scripts/build-plugins.sh \
 && cargo build --release -p sluice --bin sluice \
 && mkdir -p /out/plugins \
 && strip -o /out/sluice target/release/sluice \
 && cp -r plugins/dist /out/plugins/dist

FROM scratch AS prebuilt
COPY target/image/ /out/

FROM ${ARTIFACTS} AS artifacts

FROM ${RUNTIME_BASE}
# The binary links OpenSSL dynamically (librdkafka's TLS): without libssl3 it does not start
# ("error while loading shared libraries: libssl.so.3"), and the TLS connectors need the system's
# CA roots. (A base that has both already, as scripts/image.sh's does, needs no network here.)
RUN if ! dpkg-query -W libssl3 ca-certificates >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libssl3 ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --uid 10001 --user-group --home-dir /var/lib/sluice --create-home --shell /usr/sbin/nologin sluice \
 && install -d -o sluice -g sluice /var/cache/sluice
COPY --from=artifacts /out/sluice /usr/local/bin/sluice
# Pipelines name plugins as ../plugins/dist/*.wasm, so keep that layout under /etc/sluice.
COPY --from=artifacts /out/plugins/dist /etc/sluice/plugins/dist
COPY pipelines /etc/sluice/pipelines
USER sluice
WORKDIR /var/lib/sluice
# The handlers of the example pipelines in /etc/sluice/pipelines (its top-level files: the
# quickstart's json-enrich) compiled into the image's cache now, so that a container starts them
# without compiling, on a CPU with the build machine's features (the cache key includes them).
# An image of your own handlers does the same with your pipelines: a Python one saves tens of
# seconds at every new container.
RUN SLUICE_CACHE_DIR=/var/cache/sluice sluice plugin precompile /etc/sluice/pipelines
ENV SLUICE_CACHE_DIR=/var/cache/sluice \
    QUICKSTART_DEAD_LETTER=/var/lib/sluice/quickstart-dead-letter.jsonl \
    OUT_DIR=/var/lib/sluice \
    SLUICE_ADMIN_ADDR=0.0.0.0:9477
# The admin server: /healthz, /readyz, /metrics, /pipelines, the dashboard (docs/operations.md).
EXPOSE 9477
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluice"]
# On its own the image runs the quickstart, which needs no broker; the other example pipelines
# need their brokers: name them, or mount your own directory and run that.
CMD ["run", "/etc/sluice/pipelines/quickstart.yaml"]
