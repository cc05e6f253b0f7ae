# The `framex` command, built by `cargo xtask image` on this machine: no base
# image, nothing pulled. The build context (`target/image/framex`) holds the
# release binary and the shared libraries it loads (glibc's loader, libc, libm,
# libgcc_s), copied from this machine at their paths, and its CA certificates.
FROM scratch
# Images this label marks that lose their tag to a newer build are pruned.
LABEL org.framex.built-by="cargo xtask image"
COPY rootfs/ /
# Listen on every interface of the container; a mounted configuration's
# `server.host` is overridden by this (FRAMEX__ variables apply on top).
ENV FRAMEX__SERVER__HOST=0.0.0.0
# `framex serve` and `framex health` read /etc/framex/config.toml when it is
# mounted there; without it, the defaults (port 8080).
WORKDIR /etc/framex
USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=3s --start-period=10s --retries=3 CMD ["/framex", "health"]
ENTRYPOINT ["/framex"]
CMD ["serve"]
