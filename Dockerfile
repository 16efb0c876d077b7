# bridge: TLS-terminating reverse proxy that turns polling into push.
#   docker build -t bridge .
#   docker run -p 8443:8443/tcp -p 8443:8443/udp -p 8080:8080 -v $PWD/conf:/srv/bridge/conf bridge
# conf/ holds your routes.yaml (mount the folder, not the file: editors replace files, and a
# single-file bind mount goes stale) and certs/. Reload: docker kill -s HUP <container>.
# docs/docker.md has the rest; deploy/docker-smoke.sh builds this image and checks its health.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install . && rm -rf /src

RUN useradd --system --create-home --home-dir /srv/bridge --shell /usr/sbin/nologin bridge
WORKDIR /srv/bridge
# A minimal config that says what to mount; a mounted conf/ replaces it. Development
# certificates are generated into conf/certs on first start unless the config names real ones.
COPY --chown=bridge:bridge deploy/docker/routes.yaml ./conf/routes.yaml
RUN mkdir -p conf/certs run && chown -R bridge:bridge conf run
USER bridge

EXPOSE 8443/tcp 8443/udp 8080/tcp
# /healthz on whatever admin address the mounted config gives (listen.admin).
HEALTHCHECK --interval=30s --timeout=5s CMD ["bridge", "health", "-c", "/srv/bridge/conf/routes.yaml"]
# The pid file lets `docker exec <container> bridge reload -c conf/routes.yaml --pid-file run/bridge.pid`
# work (or send SIGHUP: `docker kill -s HUP <container>`); `docker stop` sends SIGTERM.
CMD ["bridge", "serve", "-c", "/srv/bridge/conf/routes.yaml", "--pid-file", "/srv/bridge/run/bridge.pid"]
