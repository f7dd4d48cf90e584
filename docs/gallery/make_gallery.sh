#!/usr/bin/env bash
# Rebuild the README's gallery from the bundled data (short fits; minutes on 2 CPU cores):
#   bash docs/gallery/make_gallery.sh
# Each picture is cut out of the HTML report (`geovae report`), as the report shows it, and
# stored as a 256-colour PNG (< 200 KB).
set -euo pipefail
cd "$(dirname "$0")/../.."
GALLERY=docs/gallery
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. PBMC: the c*GMΔVAE with labels on a sphere latent
geovae fit data/pbmc68k_counts.h5ad --out "$WORK/pbmc.h5ad" --model cgmvae \
    --label-key bulk_labels --latent sphere --latent-dim 2 --epochs 60 --seed 0 --quiet
geovae report "$WORK/pbmc.h5ad" --out "$WORK/pbmc.html"

# 2. Kang: a hyperbolic reference on control cells, stimulated cells mapped onto it
python - "$WORK" <<'PY'
import sys
import anndata as ad
k = ad.read_h5ad("data/kang_counts.h5ad")
k[k.obs.stim == "CTRL"].copy().write_h5ad(f"{sys.argv[1]}/ctrl.h5ad")
k[k.obs.stim == "STIM"].copy().write_h5ad(f"{sys.argv[1]}/stim.h5ad")
PY
geovae fit "$WORK/ctrl.h5ad" --batch-key stim --label-key seurat_annotations \
    --latent hyperbolic --latent-dim 2 --n-top-genes 1000 --epochs 40 --seed 0 --quiet
geovae transfer "$WORK/ctrl.geovae.model" "$WORK/stim.h5ad" --out "$WORK/stim.out.h5ad" \
    --reference "$WORK/ctrl.geovae.h5ad" --eval-key seurat_annotations --epochs 20 --quiet
geovae report "$WORK/ctrl.geovae.h5ad" --out "$WORK/ctrl.html"
geovae report "$WORK/stim.out.h5ad" --out "$WORK/stim.html"

# 3. Cut the pictures out of the reports
python - "$WORK" "$GALLERY" <<'PY'
import base64, io, re, sys
from pathlib import Path
from PIL import Image
work, gallery = Path(sys.argv[1]), Path(sys.argv[2])
picks = [("pbmc.html", "umap", 0, "pbmc_umap.png"), ("pbmc.html", "latent", 0, "pbmc_sphere.png"),
         ("pbmc.html", "training", 0, "pbmc_training.png"),
         ("ctrl.html", "latent", 0, "kang_poincare.png"),
         ("stim.html", "transfer", 0, "kang_transfer.png")]
for page, section, index, name in picks:
    text = (work / page).read_text()
    body = re.search(rf'<section id="{section}">(.*?)</section>', text, re.S).group(1)
    data = re.findall(r'src="data:image/png;base64,([^"]+)"', body)[index]
    img = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    scale = 1.0
    while True:
        small = img.resize((round(img.width * scale), round(img.height * scale)),
                           Image.LANCZOS) if scale < 1 else img
        small = small.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        if buf.tell() < 195_000 or scale < 0.5:
            break
        scale *= 0.85
    (gallery / name).write_bytes(buf.getvalue())
    print(f"{gallery / name}: {small.width}x{small.height}, {buf.tell() // 1024} KB")
PY
