"""The one validator of model options, used by the Python API, the CLI and `load` alike.

Unknown or misspelt options are errors that name them (never silently dropped). The options a
latent geometry or a module accepts are read from their constructors' signatures, so a new
option is declared once, where it is used.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

from geovae.errors import OptionError
from geovae.nn.latents import DECODER_INPUTS, LATENTS
from geovae.nn.likelihoods import LIKELIHOODS

#: posterior families on the sphere
SPHERE_POSTERIORS = ("vmf", "power-spherical")


def keyword_options(fn: Any, skip: int = 0, keyword_only: bool = False) -> dict[str, Any]:
    """Parameters of the method ``fn`` after ``self`` and the first ``skip`` others (or only
    its keyword-only ones), with their defaults."""
    params = list(inspect.signature(fn).parameters.values())[1 + skip:]
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: p.default for p in params if p.kind in kinds}


def latent_option_names(latent: str) -> dict[str, Any]:
    """Options a latent geometry accepts (beyond dimension and width), with defaults."""
    return keyword_options(LATENTS[latent].__init__, skip=2)


@dataclass
class ModelConfig:
    """A validated model description; saved in the model directory's config.json."""

    model: str = "vae"
    latent: str = "euclidean"
    latent_dim: int = 10
    likelihood: str = "auto"
    n_hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.1
    seed: int = 0
    latent_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], model_options: dict[str, Any]) -> ModelConfig:
        """Validate a saved or user-given dict (unknown keys are errors)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"unknown model setting(s) {unknown}; known: {sorted(known)}",
                              param="config")
        missing = sorted(known - set(d) - {"latent_options", "model_options"})
        if missing:
            raise OptionError(f"missing model setting(s) {missing}", param="config")
        return validate(**{**d, "model_options": d.get("model_options") or {}},
                        known_model_options=model_options)


def validate(*, model: str = "vae", latent: str = "euclidean", latent_dim: int = 10,
             likelihood: str = "auto", n_hidden: int = 128, n_layers: int = 1,
             dropout: float = 0.1, seed: int = 0, latent_options: dict[str, Any] | None = None,
             model_options: dict[str, Any] | None = None,
             known_model_options: dict[str, Any] | None = None) -> ModelConfig:
    """Check every option's type and range; ``known_model_options`` are the options the chosen
    model's module accepts (name -> default)."""
    if latent not in LATENTS:
        raise OptionError(f"unknown {{opt}} '{latent}': use " + ", ".join(LATENTS),
                          param="latent")
    if likelihood != "auto" and likelihood not in LIKELIHOODS:
        raise OptionError(f"unknown {{opt}} '{likelihood}': use auto, " + ", ".join(LIKELIHOODS),
                          param="likelihood")
    for name, value, low in (("latent_dim", latent_dim, 1), ("n_hidden", n_hidden, 1),
                             ("n_layers", n_layers, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise OptionError(f"{{opt}} must be a whole number >= {low}, got {value!r}",
                              param=name)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise OptionError(f"{{opt}} must be a whole number, got {seed!r}", param="seed")
    if not 0 <= float(dropout) < 1:
        raise OptionError(f"{{opt}} must be in [0, 1), got {dropout!r}", param="dropout")
    latent_options = dict(latent_options or {})
    allowed = latent_option_names(latent)
    unknown = sorted(set(latent_options) - set(allowed))
    for name in unknown:
        owners = [g for g in LATENTS if name in latent_option_names(g)]
        if owners:
            raise OptionError(f"{{opt}} works with latent {' or '.join(owners)} only, not "
                              f"'{latent}'", param=f"latent_options.{name}")
    if unknown:
        raise OptionError(f"unknown option(s) {unknown} for latent '{latent}' in {{opt}}; "
                          f"known: {sorted(allowed) or 'none'}", param="latent_options")
    if "flow" in latent_options:
        flow = latent_options["flow"]
        if not isinstance(flow, int) or isinstance(flow, bool) or flow < 0:
            raise OptionError(f"{{opt}} must be a whole number >= 0, got {flow!r}",
                              param="latent_options.flow")
    if latent_options.get("posterior", "vmf") not in SPHERE_POSTERIORS:
        raise OptionError(f"unknown {{opt}} '{latent_options['posterior']}': use "
                          + " or ".join(SPHERE_POSTERIORS), param="latent_options.posterior")
    if latent_options.get("decoder_input", "tangent") not in DECODER_INPUTS:
        raise OptionError(f"unknown {{opt}} '{latent_options['decoder_input']}': use "
                          + " or ".join(DECODER_INPUTS), param="latent_options.decoder_input")
    model_options = dict(model_options or {})
    known = known_model_options or {}
    unknown = sorted(set(model_options) - set(known))
    for name in unknown:
        from geovae.models.registry import MODELS

        owners = [m for m, cls in MODELS.items() if name in cls.module_options()]
        if owners:
            raise OptionError(f"{{opt}} works with model {' or '.join(owners)} only, not "
                              f"'{model}'", param=f"model_options.{name}")
    if unknown:
        raise OptionError(f"unknown option(s) {unknown} for model '{model}' in {{opt}}; "
                          f"known: {sorted(known) or 'none'}", param="model_options")
    return ModelConfig(model=model, latent=latent, latent_dim=int(latent_dim),
                       likelihood=likelihood, n_hidden=int(n_hidden), n_layers=int(n_layers),
                       dropout=float(dropout), seed=int(seed), latent_options=latent_options,
                       model_options=model_options)
