# The example axum service that embeds FrameX (`examples/reports-service`),
# built by `cargo xtask image` like the `framex` image: no base image, the
# release binary and the shared libraries it loads.
FROM scratch
# Images this label marks that lose their tag to a newer build are pruned.
LABEL org.framex.built-by="cargo xtask image"
COPY rootfs/ /
WORKDIR /etc/framex
USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=3s --start-period=10s --retries=3 CMD ["/reports-service", "--health", "--listen", "0.0.0.0:8080"]
ENTRYPOINT ["/reports-service"]
CMD ["/etc/framex/config.toml", "--listen", "0.0.0.0:8080"]
