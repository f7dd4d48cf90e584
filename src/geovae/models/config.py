"""The one validator of model options, used by the Python API, the CLI and `load` alike.

Unknown or misspelt options are errors that name them (never silently dropped). The options a
latent geometry or a module accepts are read from their constructors' signatures, so a new
option is declared once, where it is used.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geovae.errors import OptionError
from geovae.modules.vae import check_encoder_input
from geovae.nn.latents import DECODER_INPUTS, LATENTS
from geovae.nn.likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS

#: posterior families on the sphere
SPHERE_POSTERIORS = ("vmf", "power-spherical")
#: the largest sizes geovae builds, checked before anything is allocated (a shared model
#: directory's config.json must not be able to exhaust a node's memory)
LIMITS = {"latent_dim": 1024, "n_hidden": 16384, "n_layers": 64,
          "model_options.n_clusters": 1000, "model_options.w_dim": 1024,
          "latent_options.flow": 64}
#: hidden layers hold at most this many weights (n_layers x n_hidden^2: 1 GiB of float32)
MAX_HIDDEN_WEIGHTS = 2 ** 28
#: seeds run from 0 to this (numpy's and torch's seeds, with room for geovae's offsets)
MAX_SEED = 2 ** 31 - 1


def check_size(name: str, value: Any, low: int = 1) -> int:
    """A whole number between ``low`` and ``LIMITS[name]`` (one error naming both)."""
    high = LIMITS.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f">= {low}"
        raise OptionError(f"{{opt}} must be a whole number {limit}, got {value!r}", param=name)
    return value


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

    def model_options_record(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The module's options in effect for the run record: its ``defaults`` (name ->
        default) overridden by ``model_options``, as plain Python values (JSON-safe; None
        left out)."""
        in_effect = {**defaults, **self.model_options}
        return {name: value.item() if isinstance(value, np.generic) else value
                for name, value in in_effect.items() if value is not None}

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
        config = validate(**{**d, "model_options": d.get("model_options") or {}},
                          known_model_options=model_options)
        complete_encoder_input(config, "log1p")  # saved before the option: log1p
        return config


def complete_encoder_input(config: ModelConfig, default: str) -> None:
    """A count model's ``encoder_input`` made explicit, ``default`` where not given (saved
    with the model, so a later default does not change what a saved model computes)."""
    if config.likelihood in COUNT_LIKELIHOODS:
        config.model_options.setdefault("encoder_input", default)


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
    for name, value in (("latent_dim", latent_dim), ("n_hidden", n_hidden),
                        ("n_layers", n_layers)):
        check_size(name, value)
    if n_layers * n_hidden ** 2 > MAX_HIDDEN_WEIGHTS:
        raise OptionError(f"{{opt}}: {n_layers} hidden layers of {n_hidden} units hold "
                          f"{n_layers * n_hidden ** 2:,} weights, more than the limit "
                          f"{MAX_HIDDEN_WEIGHTS:,} (n_layers x n_hidden^2): use fewer or "
                          "narrower layers", param="n_hidden")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"{{opt}} must be a whole number between 0 and {MAX_SEED}, got "
                          f"{seed!r}", param="seed")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) \
            or not 0 <= float(dropout) < 1:
        raise OptionError(f"{{opt}} must be in [0, 1), got {dropout!r}", param="dropout")
    latent_options = dict(latent_options or {})
    check_option_names("latent", latent, latent_options, latent_option_names(latent),
                       lambda name: [g for g in LATENTS if name in latent_option_names(g)])
    if "flow" in latent_options:
        check_size("latent_options.flow", latent_options["flow"], low=0)
    if latent_options.get("posterior", "vmf") not in SPHERE_POSTERIORS:
        raise OptionError(f"unknown {{opt}} '{latent_options['posterior']}': use "
                          + " or ".join(SPHERE_POSTERIORS), param="latent_options.posterior")
    if latent_options.get("decoder_input", "tangent") not in DECODER_INPUTS:
        raise OptionError(f"unknown {{opt}} '{latent_options['decoder_input']}': use "
                          + " or ".join(DECODER_INPUTS), param="latent_options.decoder_input")
    model_options = dict(model_options or {})
    check_option_names("model", model, model_options, known_model_options or {}, _model_owners)
    for name in ("n_clusters", "w_dim"):
        if model_options.get(name) is not None:
            check_size(f"model_options.{name}", model_options[name])
    check_encoder_input(model_options.get("encoder_input"))
    return ModelConfig(model=model, latent=latent, latent_dim=int(latent_dim),
                       likelihood=likelihood, n_hidden=int(n_hidden), n_layers=int(n_layers),
                       dropout=float(dropout), seed=int(seed), latent_options=latent_options,
                       model_options=model_options)


def check_option_names(kind: str, chosen: str, given: dict[str, Any], known: Any,
                       owners: Callable[[str], list[str]]) -> None:
    """Every name in ``given`` (``latent_options`` / ``model_options``) is an option of the
    chosen latent or model; an option of another one is named with its owners."""
    unknown = sorted(set(given) - set(known))
    for name in unknown:
        found = owners(name)
        if found:
            raise OptionError(f"{{opt}} works with {kind} {' or '.join(found)} only, not "
                              f"'{chosen}'", param=f"{kind}_options.{name}")
    if unknown:
        raise OptionError(f"unknown option(s) {unknown} for {kind} '{chosen}' in {{opt}}; "
                          f"known: {sorted(known) or 'none'}", param=f"{kind}_options")


def nested_options() -> dict[str, str]:
    """Each option a latent geometry or a model declares, and the dictionary of `geovae.fit`
    it goes in: ``latent_options`` or ``model_options`` (a name both declare: the latent's)."""
    from geovae.models.registry import MODELS

    found = {name: "model_options" for cls in MODELS.values() for name in cls.module_options()}
    found.update({name: "latent_options" for g in LATENTS for name in latent_option_names(g)})
    return found


def _model_owners(name: str) -> list[str]:
    """The models that have ``name`` among their options."""
    from geovae.models.registry import MODELS

    return [m for m, cls in MODELS.items() if name in cls.module_options()]
