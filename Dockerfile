# geovae in a container: the image the Nextflow modules name (workflows/nextflow/modules,
# `container "geovae:0.2.0"`; -profile docker). No image is published; build it from the
# repository root:
#
#   docker build -t geovae:0.2.0 .
#   apptainer build geovae-0.2.0.sif docker-daemon://geovae:0.2.0   # for -profile singularity
#
# geovae is installed the README's way: torch==2.13.0 first (PyPI's wheel: the CUDA build on
# Linux x86-64, which also runs on CPU), then the package from this checkout.
FROM python:3.11-slim

# procps: Nextflow reads task metrics with ps
RUN apt-get update \
    && apt-get install -y --no-install-recommends procps \
    && rm -rf /var/lib/apt/lists/*

# Nextflow runs tasks as the calling user (docker.runOptions -u) with no writable home, and
# Singularity images are read-only: caches go to /tmp
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba

WORKDIR /opt/geovae
COPY . .
RUN pip install torch==2.13.0 && pip install -e .

# the pipeline's split script (workflows/nextflow/bin/split_h5ad.py links to the Snakemake
# one, outside the bin/ folder Nextflow mounts) also from the image
ENV PATH="${PATH}:/opt/geovae/workflows/nextflow/bin"
WORKDIR /
CMD ["geovae", "--help"]
