#!/usr/bin/env bash
# Runs once inside the new conda environment of envs/geovae.yaml (Snakemake's post-deploy
# hook): geovae from this repository, editable, as the README installs it. GEOVAE_SRC is set
# by the Snakefile (the repository the Snakefile is in).
set -euo pipefail
pip install -e "${GEOVAE_SRC:?GEOVAE_SRC is unset: run the Snakefile, which sets it to the geovae repository}"
