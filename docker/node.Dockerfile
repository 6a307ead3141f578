# A volunteer's d4c node (docs/nodes.md): `d4c node sync --every 30m` next to a
# transmission-daemon that seeds what the node holds, from the same requirements.lock
# as every d4c build. The node's config (with its key) and its copies live in /data,
# a volume; nothing else is kept.
#
# The first steps are docker/Dockerfile's, so a machine that built that image reuses
# its layers. BASE_IMAGE as there (a local Debian bookworm image where no registry is
# reachable).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    TZ=UTC \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/bin/python3 -m venv /opt/d4c

COPY requirements.lock /opt/d4c-src/requirements.lock
RUN /opt/d4c/bin/pip install --require-hashes --no-deps -r /opt/d4c-src/requirements.lock

# The BitTorrent clients: transmission-daemon seeds (over its RPC on 127.0.0.1 only),
# aria2c fetches from peers and the torrents' web seeds.
RUN apt-get update \
    && apt-get install -y --no-install-recommends transmission-daemon aria2 \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /opt/d4c-src/
COPY scripts/d4c /opt/d4c-src/scripts/d4c
RUN /opt/d4c/bin/pip install --no-deps /opt/d4c-src \
    && rm -rf /opt/d4c-src
COPY docker/node-entrypoint.sh /usr/local/bin/d4c-node

ENV PATH=/opt/d4c/bin:/usr/local/bin:/usr/bin:/bin \
    D4C_NODE_CONFIG=/data/node.yaml
VOLUME /data
# BitTorrent peers (TCP and uTP); the RPC stays inside the container.
EXPOSE 51413/tcp 51413/udp
ENTRYPOINT ["/usr/local/bin/d4c-node"]
