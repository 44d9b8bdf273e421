# Multi-stage build of both controllers. The build commands are those of `make dist`.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p image-reflector-controller -p image-automation-controller

# Same glibc as the builder (bookworm); runs as nobody, like Flux's images.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/image-reflector-controller /usr/local/bin/
COPY --from=builder /src/target/release/image-automation-controller /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/image-reflector-controller"]
