# saring in a container: a multi-stage build (Rust toolchain → distroless runtime), running as a non-root user.
#
#   docker build --build-arg SARING_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t saring .
#   docker run --rm -p 50051:50051 -p 8080:8080 \
#     -v saring-data:/var/lib/saring -v $PWD/tls:/etc/saring/tls:ro \
#     -e SARING__PRIVACY__HASH_SECRET=... saring
#
# The image serves with deploy/container.toml (mount your own over /etc/saring/saring.toml). See OPERATIONS.md.

FROM rust:1.95-bookworm AS build
ARG SARING_GIT_COMMIT=unknown
ENV SARING_GIT_COMMIT=${SARING_GIT_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p saring \
 && install -D -m 0755 target/release/saring /out/usr/local/bin/saring \
 && install -d -m 0750 /data \
 && install -D -m 0644 deploy/container.toml /out/etc/saring/saring.toml \
 && install -D -m 0644 config/reference.toml /out/etc/saring/reference.toml

# glibc and libgcc only: everything else (SQLite, rustls) is linked into the binary.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
# COPY creates files as root unless told otherwise: the data directory belongs to the service's user.
COPY --from=build --chown=65532:65532 /data /var/lib/saring
USER 65532:65532
WORKDIR /var/lib/saring
VOLUME ["/var/lib/saring"]
EXPOSE 50051 8080
ENTRYPOINT ["/usr/local/bin/saring"]
CMD ["serve", "--config", "/etc/saring/saring.toml"]
