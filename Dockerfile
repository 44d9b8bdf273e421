# Multi-stage build of both controllers. The build commands are those of `make dist`.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p image-reflector-controller -p image-automation-controller

# Two images, one per controller, each with its binary as the entrypoint, so a Flux user can swap
# images without touching the Deployments. Build with `--target image-reflector-controller` or
# `--target image-automation-controller`. Same glibc as the builder (bookworm); runs as nobody.
FROM gcr.io/distroless/cc-debian12:nonroot AS image-automation-controller
COPY --from=builder /src/target/release/image-automation-controller /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/image-automation-controller"]

FROM gcr.io/distroless/cc-debian12:nonroot AS image-reflector-controller
COPY --from=builder /src/target/release/image-reflector-controller /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/image-reflector-controller"]
