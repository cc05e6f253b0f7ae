# Python FrameX (framex-kit 0.4.2) beside the Rust images, built by
# `cargo xtask image --python` with nothing pulled: its base,
# `framex-debian:<release>`, is a minimal Debian made by debootstrap from the
# machine's own Debian mirror and imported; the wheels were downloaded from
# PyPI into the build context (`target/image/python-framex/wheels`) and are
# installed here without an index. framex-kit 0.4.2 imports `yaml` without
# declaring PyYAML, so PyYAML is installed beside it.
ARG BASE
FROM ${BASE}
# Images this label marks that lose their tag to a newer build are pruned.
LABEL org.framex.built-by="cargo xtask image"
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/framex-kit \
    && /opt/framex-kit/bin/pip install --quiet --no-index --find-links /tmp/wheels framex-kit==0.4.2 pyyaml \
    && rm -rf /tmp/wheels /root/.cache
COPY plugins/ /srv/framex/
ENV PYTHONPATH=/srv/framex PYTHONUNBUFFERED=1
# A mounted /srv/framex/config.toml chooses the plugins and the port (8080 here).
WORKDIR /srv/framex
USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=3s --start-period=20s --retries=3 CMD ["/opt/framex-kit/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
ENTRYPOINT ["/opt/framex-kit/bin/framex", "run"]
