"""`BackedSource`: minibatches read from an ``.h5ad`` on disk, so memory does not grow with
the number of cells.

Rows are read in *windows* of at most ``window`` cells: a window's cells are grouped by
*block* (``block_rows`` consecutive rows of the file), each block touched is read once as one
contiguous range (CSR ``indptr``/``indices``/``data`` slices, or dense rows) and only the
requested rows are kept, in the requested order. A background thread reads the next window
while the current one trains (prefetching). At most two windows (plus one minibatch) are in
memory: ``peak_rows`` records the most rows held at once.

Training order (`shuffle`): the blocks holding the training cells are put in random order, the
cells are laid out block by block, cut into windows of ``window`` cells, and shuffled within
each window, so a minibatch mixes cells of ``window / block_rows`` blocks from anywhere in the
file, while each epoch still reads every block once (and visits every training cell exactly
once). With one block and one window it is the in-memory source's permutation, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from geovae.data.batch import Batch, one_hot
from geovae.data.h5 import align
from geovae.data.prepare import BackedPrepared
from geovae.nn.likelihoods import attach_nonzeros
from geovae.nn.nb_sum import NonZeros

#: rows per block: the unit read from disk in one go
BLOCK_ROWS = 1024
#: cells per window: the unit shuffled together and held in memory (two at a time)
WINDOW = 32768


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """On glibc, serve every allocation above ``nbytes`` by mmap, returned to the system when
    freed. glibc's default threshold grows with the largest buffer freed, after which window
    buffers come from (thread) arenas and freed ones pile up: measured on 1M cells, 2.9 GB peak
    RSS instead of ~0.6 GB. Elsewhere (no glibc) nothing happens."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, int(nbytes))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class BackedSource:
    """A `DataSource` over a matrix that stays on disk (see the module docstring)."""

    def __init__(self, prepared: BackedPrepared, n_categories: list[int], device: torch.device,
                 block_rows: int = BLOCK_ROWS, window: int = WINDOW, prefetch: bool = True):
        self.matrix, self.columns = prepared.X, prepared.columns
        self.device = device
        self.n_obs = prepared.n_obs
        self.n_features = prepared.n_features
        self.block_rows, self.window, self.prefetch = int(block_rows), int(window), prefetch
        self.batch = torch.as_tensor(prepared.batch, dtype=torch.long, device=device)
        self.labels = torch.as_tensor(prepared.labels, dtype=torch.long, device=device)
        self.n_categories = list(n_categories)
        self.peak_rows = 0  # most rows held in memory at once
        self._last: tuple[int, Any] | None = None  # the last block read (windows share one)
        fixed_mmap_threshold()

    # ------------------------------------------------------------------ reading
    def _block(self, b: int) -> Any:
        if self._last is not None and self._last[0] == b:
            return self._last[1]
        start = b * self.block_rows
        rows = align(self.matrix.read(start, min(start + self.block_rows, self.n_obs)),
                     self.columns, self.n_features)
        self._last = (b, rows)
        return rows

    def read_rows(self, rows: np.ndarray) -> Any:
        """The cells ``rows`` (any order, repeats allowed) as float32 CSR or dense rows, each
        block they touch read once."""
        if len(rows) == 0:
            return np.zeros((0, self.n_features), np.float32)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        blocks = srt // self.block_rows
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        parts = [self._block(int(blocks[g[0]]))[g_rows - int(blocks[g[0]]) * self.block_rows]
                 for g, g_rows in zip(np.split(np.arange(len(srt)), cuts),
                                      np.split(srt, cuts), strict=True)]
        out = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return out[inverse]

    def _windows(self, idx: np.ndarray) -> Iterator[Any]:
        """Rows of ``idx`` window by window, the next one read in a background thread."""
        starts = range(0, len(idx), self.window)
        if not self.prefetch:
            for s in starts:
                yield self.read_rows(idx[s:s + self.window])
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geovae-prefetch") as pool:
            pending = None
            for s in starts:
                nxt = pool.submit(self.read_rows, idx[s:s + self.window])
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()

    # ------------------------------------------------------------------ DataSource
    def shuffle(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A training order of ``idx``: blocks in random order, cells shuffled within windows
        (see the module docstring)."""
        cells = idx.cpu()
        blocks = cells // self.block_rows
        present = torch.unique(blocks)
        if len(present) > 1:
            rank = torch.empty(int(present.max()) + 1, dtype=torch.long)
            rank[present] = torch.randperm(len(present), generator=generator)
            cells = cells[torch.argsort(rank[blocks], stable=True)]
        out = [w[torch.randperm(len(w), generator=generator)]
               for w in torch.split(cells, self.window)]
        return torch.cat(out).to(idx.device)

    def take(self, idx: torch.Tensor) -> Batch:
        rows = idx.cpu().numpy()
        return self._batch(self.read_rows(rows), idx)

    def batches(self, idx: torch.Tensor, batch_size: int, drop_last: bool = False
                ) -> Iterator[Batch]:
        cells = idx.cpu().numpy()
        n = len(cells) - (len(cells) % batch_size if drop_last else 0)
        cells, done = cells[:n], 0
        carry: Any = None
        for rows in self._windows(cells):
            if carry is not None and carry.shape[0]:
                rows = (sp.vstack([carry, rows], format="csr") if sp.issparse(rows)
                        else np.vstack([carry, rows]))
            self.peak_rows = max(self.peak_rows, rows.shape[0] + (self.window if self.prefetch
                                                                  else 0))
            full = rows.shape[0] - rows.shape[0] % batch_size
            for s in range(0, full, batch_size):
                yield self._batch(rows[s:s + batch_size], idx[done:done + batch_size])
                done += batch_size
            carry = rows[full:]
        if carry is not None and carry.shape[0]:
            yield self._batch(carry, idx[done:done + carry.shape[0]])

    def _batch(self, rows: Any, idx: torch.Tensor) -> Batch:
        dense = rows.toarray() if sp.issparse(rows) else np.ascontiguousarray(rows)
        x = torch.from_numpy(np.asarray(dense, dtype=np.float32))
        # canonical CSR rows on the CPU carry their non-zeros as the in-memory source's do
        # (`InMemorySource.rows`): the encoder's sparse first layer and the NB sum take them,
        # so one block and one window train bit for bit as in memory
        if (sp.issparse(rows) and self.device.type == "cpu" and rows.has_canonical_format
                and bool((rows.data != 0).all())):
            lengths = torch.from_numpy(np.diff(rows.indptr).astype(np.int64))
            row_of = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
            cols = torch.from_numpy(rows.indices.astype(np.int64))
            attach_nonzeros(x, NonZeros(
                row_of, cols, row_of * self.n_features + cols,
                torch.from_numpy(rows.data.astype(np.float32)), torch.cumsum(lengths, 0)))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        idx = idx.to(self.device)
        return Batch(x, one_hot(self.batch, idx, self.n_categories), self.labels[idx])
