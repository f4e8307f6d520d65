# syntax=docker/dockerfile:1
#
# Image for a `processor` worker. The console script `processor` is the
# entrypoint; the default command runs the example word-count topology:
#
#   docker build -t processor .
#   docker run --rm -e PROCESSOR_BOOTSTRAP_SERVERS=broker:9092 processor
#   docker run --rm processor run topologies.words --bootstrap-servers broker:9092
#
# Configuration comes from the command line or from the environment:
# PROCESSOR_BOOTSTRAP_SERVERS, PROCESSOR_APPLICATION_ID, PROCESSOR_INSTANCE_ID
# (optional) and PROCESSOR_STATE_DIR (preset to the volume below).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build and install from a scratch directory that is removed afterwards, so
# the only copy of the package in the image is the installed one.
WORKDIR /src

# Third-party dependencies first, read from pyproject.toml, so that this layer
# is rebuilt only when the dependency list changes, not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep=chr(10))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The package itself. pyproject.toml names README.md as the long description;
# the wildcard keeps the build going where the file is absent.
COPY pyproject.toml README.md* ./
COPY processor/ processor/
RUN pip install . \
    && rm -rf /src

# Topology modules are imported by name (`processor run topologies.words`),
# so /app must be on the import path: a console script's sys.path[0] is the
# directory of the script, not the working directory.
WORKDIR /app
COPY topologies/ topologies/
ENV PYTHONPATH=/app

# Unprivileged user owning the state directory. The directory is created and
# chowned before VOLUME so that a fresh volume starts out with this ownership.
RUN groupadd --system --gid 10001 processor \
    && useradd --system --uid 10001 --gid processor \
        --home-dir /var/lib/processor --no-create-home --shell /usr/sbin/nologin processor \
    && mkdir -p /var/lib/processor /data/incoming /data/orders \
    && chown processor:processor /var/lib/processor /data /data/incoming /data/orders
ENV PROCESSOR_STATE_DIR=/var/lib/processor
VOLUME ["/var/lib/processor"]

USER processor:processor

ENTRYPOINT ["processor"]
CMD ["run", "topologies.words"]
