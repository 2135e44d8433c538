# syntax=docker/dockerfile:1
# The operator's image: jango-fett-operator built statically (musl) and run on distroless as
# its nonroot user, as the Helm chart's Deployment expects (runAsUser 65532, read-only root).
#   docker build -t ghcr.io/jango-fett/jango-fett-operator:0.1.0 .

FROM docker.io/library/rust:1.95.0-bookworm AS build
# musl-tools: musl-gcc, which compiles ring's C and assembly for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# The whole workspace: cargo reads every member's manifest, and --locked holds it to Cargo.lock.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p jf-operator --bin jango-fett-operator \
 && cp target/x86_64-unknown-linux-musl/release/jango-fett-operator /jango-fett-operator

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="jango-fett-operator" \
      org.opencontainers.image.source="https://github.com/jango-fett/jango-fett" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /jango-fett-operator /usr/local/bin/jango-fett-operator
USER 65532:65532
# /metrics, /healthz and /readyz (--http-address, 0.0.0.0:8080 by default).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jango-fett-operator"]
