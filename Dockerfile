# syntax=docker/dockerfile:1
#
# One image with both binaries: /usr/local/bin/quota-service and
# /usr/local/bin/quota-operator (the chart runs each in its own container).
#
#   docker build -t edge-quota:dev .
#
# Build stage: the release profile (thin LTO) of the two binaries. SQLite is
# compiled in (libsqlite3-sys, bundled) and TLS is rustls, so the final image
# needs nothing but glibc and libgcc.
ARG RUST_VERSION=1.89
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build reads: the workspace manifests, the members' sources
# (cargo needs every member to resolve the workspace) and the migrations
# embedded by sqlx::migrate!.
COPY Cargo.toml Cargo.lock ./
COPY api ./api
COPY service ./service
COPY operator ./operator
COPY testenv ./testenv
COPY bench ./bench
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin quota-service --bin quota-operator \
    && install -D -m 0755 target/release/quota-service /out/quota-service \
    && install -D -m 0755 target/release/quota-operator /out/quota-operator

# Final stage: distroless (no shell, no package manager), running as the
# unprivileged user 65532 ("nonroot"); the chart adds a read-only root
# filesystem and drops every capability.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# quota-service: REST endpoint; quota-operator: /healthz (HEALTH_ADDR).
EXPOSE 8183 8081
# No AUTH_MODE on purpose: on 0.0.0.0 the service refuses to start until
# one is chosen (the chart sets kubernetes; `docker run -e AUTH_MODE=...`).
ENV QUOTA_HOST=0.0.0.0 \
    QUOTA_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/quota-service"]
