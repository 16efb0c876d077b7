# bridge: TLS-terminating reverse proxy that turns polling into push.
#   docker build -t bridge .
#   docker run -p 8443:8443/tcp -p 8443:8443/udp -p 8080:8080 \
#     -v $PWD/routes.yaml:/srv/bridge/routes.yaml -v bridge-certs:/srv/bridge/certs bridge
# (README "Docker": the upstream is not 127.0.0.1 in here; keep certs/ on a volume.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install . && rm -rf /src

RUN useradd --system --create-home --home-dir /srv/bridge --shell /usr/sbin/nologin bridge
WORKDIR /srv/bridge
COPY --chown=bridge:bridge routes.yaml ./routes.yaml
# Development certificates are generated here on first start unless routes.yaml names real ones.
RUN mkdir -p certs logs && chown bridge:bridge certs logs
USER bridge

EXPOSE 8443/tcp 8443/udp 8080/tcp
# /healthz on the admin listener of the image's routes.yaml (listen.admin 127.0.0.1:9901).
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)" || exit 1
CMD ["bridge", "serve", "-c", "/srv/bridge/routes.yaml"]
