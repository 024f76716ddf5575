"""Trained heads as differentiable torch modules, and their safe (no pickle) storage.

The residual pipelines fit scikit-learn models; the explainability pipeline backpropagates
from a head's output through the vision encoder (Grad-CAM). This module turns a fitted
estimator into a torch module that gives the SAME outputs (to float64 round-off):

- `LogisticHead`: `forward(embedding) -> probability` of the positive class, from a
  `LogisticRegression` (optionally after a `StandardScaler`, folded into the weights).
- `RidgeMap`: a linear map `i -> w` from `Ridge` / `RidgeCV` / `LinearRegression`.
- `MLPMap`: the same for an `MLPRegressor` (the MLP option of residual_2).
- `ResidualHead`: `forward(image_embedding, phenotype_embedding) -> probability`: computes
  the residual `r = i - w` (residual_1) or `r = f(i) - w` with a map `f` (residual_2)
  INSIDE the module, then applies a `LogisticHead`; the gradient reaches `i` through both
  paths.

Every module keeps float64 parameters by default and casts its input to its own dtype, so
probabilities match scikit-learn to ~1e-12; call `.float()` for a float32 module (then the
outputs agree to ~1e-6). All forwards are plain differentiable torch ops.

Storage: `heads_to_tensors(heads) -> (tensors, metadata)` gives named arrays and a small
JSON-able description for `medclip_residuals.datasets.TensorDictDataset` (one
.safetensors file); `heads_from_tensors(tensors, metadata)` rebuilds the modules. A
submodule shared by several heads (residual_2's one map `f`) is stored once.

Head names in the pipelines' outputs:
- residual_1_heads: "<target>/image" (LogisticHead on i) and "<target>/residual_1"
  (ResidualHead, no map: head(i - w));
- residual_2_heads: "map" (f) and "<target>/residual_2" (ResidualHead: head(f(i) - w)).
Any stored head is the `regression_model` of the explainability pipeline's
`HeatMapModel(vision_encoder, regression_model)` as it is (a ResidualHead is recognised by
its `residual` method and is given the image's w); `HeatMapModel.residual(vision_encoder,
rh.head, rh.map)` builds the same model from a ResidualHead's pieces.

Example:
    >>> head = LogisticHead(2)
    >>> tensors, metadata = heads_to_tensors({"A/image": head, "A/residual_1": ResidualHead(head)})
    >>> sorted(heads_from_tensors(tensors, metadata))
    ['A/image', 'A/residual_1']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1
_ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid}


class LogisticHead(nn.Module):
    """p = sigmoid(x . weight + bias): a binary logistic-regression head.

    forward(embedding): (N, D) -> (N,) probabilities, or (D,) -> a 0-d tensor.
    `logit(embedding)` gives the pre-sigmoid score (often better conditioned for Grad-CAM).
    """

    kind = "logistic"

    def __init__(self, in_features: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1, dtype=dtype)

    def logit(self, embedding: torch.Tensor) -> torch.Tensor:
        embedding = embedding.to(self.linear.weight.dtype)
        return self.linear(embedding).squeeze(-1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(embedding))

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features}


class RidgeMap(nn.Module):
    """A linear map x -> x @ weight.T + bias (f: i -> w of residual_2, ridge option)."""

    kind = "ridge"

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, dtype=dtype)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding.to(self.linear.weight.dtype))

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "out_features": self.linear.out_features}


class MLPMap(nn.Module):
    """A multilayer perceptron map (f: i -> w of residual_2, MLP option).

    `layer_sizes` = [in, hidden..., out]; `activation` between layers, none after the last
    (scikit-learn's MLPRegressor uses the identity output activation).
    """

    kind = "mlp"

    def __init__(self, layer_sizes: list[int], activation: str = "relu", dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if len(layer_sizes) < 2:
            raise ValueError(f"an MLP needs at least input and output sizes; got {layer_sizes}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: use one of {sorted(_ACTIVATIONS)}")
        self.layer_sizes = [int(n) for n in layer_sizes]
        self.activation = activation
        layers: list[nn.Module] = []
        for j, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            layers.append(nn.Linear(n_in, n_out, dtype=dtype))
            if j < len(self.layer_sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding.to(self.layers[0].weight.dtype))

    def config(self) -> dict[str, Any]:
        return {"layer_sizes": self.layer_sizes, "activation": self.activation}


class ResidualHead(nn.Module):
    """p = head(r), r = map(i) - w (or i - w without a map).

    forward(image_embedding, phenotype_embedding): both (N, D) (or (D,)) -> (N,)
    probabilities. `residual(i, w)` gives r itself. With `map=None` this is residual_1's
    model; with a `RidgeMap`/`MLPMap` it is residual_2's.
    """

    kind = "residual"

    def __init__(self, head: LogisticHead, map: nn.Module | None = None) -> None:  # noqa: A002
        super().__init__()
        self.head = head
        self.map = map

    def residual(self, image_embedding: torch.Tensor, phenotype_embedding: torch.Tensor) -> torch.Tensor:
        dtype = self.head.linear.weight.dtype
        predicted = image_embedding.to(dtype) if self.map is None else self.map(image_embedding)
        phenotype_embedding = phenotype_embedding.to(predicted.dtype)
        if predicted.shape[-1] != phenotype_embedding.shape[-1]:
            raise ValueError(
                f"residual needs equal widths: {'f(i)' if self.map is not None else 'i'} has "
                f"{predicted.shape[-1]}, w has {phenotype_embedding.shape[-1]}"
            )
        return predicted - phenotype_embedding

    def logit(self, image_embedding: torch.Tensor, phenotype_embedding: torch.Tensor) -> torch.Tensor:
        return self.head.logit(self.residual(image_embedding, phenotype_embedding))

    def forward(self, image_embedding: torch.Tensor, phenotype_embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.residual(image_embedding, phenotype_embedding))


# ---------------------------------------------------------------- from scikit-learn


def _split_pipeline(estimator: Any) -> tuple[list[Any], Any]:
    """(preprocessing steps, final estimator) of an sklearn Pipeline, or ([], estimator)."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return [], estimator
    return [step for _, step in steps[:-1]], steps[-1][1]


def _scaler_affine(steps: list[Any], n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold StandardScaler steps into x' = x * scale + shift (elementwise)."""
    scale = np.ones(n_features)
    shift = np.zeros(n_features)
    for step in steps:
        if step is None or step == "passthrough":
            continue
        name = type(step).__name__
        if name != "StandardScaler":
            raise TypeError(f"cannot convert a pipeline step {name}: only StandardScaler can be folded into a head")
        mean = step.mean_ if step.mean_ is not None else np.zeros(n_features)
        std = step.scale_ if step.scale_ is not None else np.ones(n_features)
        # x' = (x*scale + shift - mean) / std
        scale, shift = scale / std, (shift - mean) / std
    return scale, shift


def _fold(coef: np.ndarray, intercept: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear layer on x' = x*scale + shift, rewritten as a linear layer on x."""
    return coef * scale[None, :], intercept + coef @ shift


def logistic_head_from_sklearn(estimator: Any, dtype: torch.dtype = torch.float64) -> LogisticHead:
    """A LogisticHead giving the same `predict_proba(X)[:, 1]` as a fitted binary
    LogisticRegression (or a Pipeline of StandardScaler(s) and a LogisticRegression)."""
    steps, model = _split_pipeline(estimator)
    if type(model).__name__ not in ("LogisticRegression", "LogisticRegressionCV"):
        raise TypeError(f"expected a LogisticRegression, got {type(model).__name__}")
    classes = list(getattr(model, "classes_", []))
    if len(classes) != 2 or model.coef_.shape[0] != 1:
        raise ValueError(f"a LogisticHead needs a binary model; this one has classes {classes}")
    coef = np.asarray(model.coef_, dtype=float)
    intercept = np.asarray(model.intercept_, dtype=float)
    coef, intercept = _fold(coef, intercept, *_scaler_affine(steps, coef.shape[1]))
    head = LogisticHead(coef.shape[1], dtype=dtype)
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(coef))
        head.linear.bias.copy_(torch.from_numpy(intercept))
    return head


def ridge_map_from_sklearn(estimator: Any, dtype: torch.dtype = torch.float64) -> RidgeMap:
    """A RidgeMap giving the same `predict(X)` as a fitted Ridge / RidgeCV / LinearRegression
    (optionally after StandardScaler steps)."""
    steps, model = _split_pipeline(estimator)
    if not hasattr(model, "coef_") or type(model).__name__ not in ("Ridge", "RidgeCV", "LinearRegression"):
        raise TypeError(f"expected a fitted Ridge/RidgeCV/LinearRegression, got {type(model).__name__}")
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=float))
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=float), (coef.shape[0],)).copy()
    coef, intercept = _fold(coef, intercept, *_scaler_affine(steps, coef.shape[1]))
    ridge = RidgeMap(coef.shape[1], coef.shape[0], dtype=dtype)
    with torch.no_grad():
        ridge.linear.weight.copy_(torch.from_numpy(coef))
        ridge.linear.bias.copy_(torch.from_numpy(intercept))
    return ridge


def mlp_map_from_sklearn(estimator: Any, dtype: torch.dtype = torch.float64) -> MLPMap:
    """An MLPMap giving the same `predict(X)` as a fitted MLPRegressor (optionally after
    StandardScaler steps, folded into the first layer)."""
    steps, model = _split_pipeline(estimator)
    if type(model).__name__ != "MLPRegressor":
        raise TypeError(f"expected a fitted MLPRegressor, got {type(model).__name__}")
    if model.out_activation_ != "identity":
        raise ValueError(f"unsupported output activation {model.out_activation_!r}")
    coefs = [np.asarray(c, dtype=float).T for c in model.coefs_]  # torch: (out, in)
    intercepts = [np.asarray(b, dtype=float) for b in model.intercepts_]
    coefs[0], intercepts[0] = _fold(coefs[0], intercepts[0], *_scaler_affine(steps, coefs[0].shape[1]))
    sizes = [coefs[0].shape[1]] + [c.shape[0] for c in coefs]
    mlp = MLPMap(sizes, activation=model.activation, dtype=dtype)
    linears = [layer for layer in mlp.layers if isinstance(layer, nn.Linear)]
    with torch.no_grad():
        for layer, coef, intercept in zip(linears, coefs, intercepts):
            layer.weight.copy_(torch.from_numpy(coef))
            layer.bias.copy_(torch.from_numpy(intercept))
    return mlp


def map_from_sklearn(estimator: Any, dtype: torch.dtype = torch.float64) -> nn.Module:
    """RidgeMap or MLPMap, whichever the fitted regressor is."""
    _, model = _split_pipeline(estimator)
    if type(model).__name__ == "MLPRegressor":
        return mlp_map_from_sklearn(estimator, dtype)
    return ridge_map_from_sklearn(estimator, dtype)


# ---------------------------------------------------------------- safe storage

_KINDS: dict[str, type[nn.Module]] = {cls.kind: cls for cls in (LogisticHead, RidgeMap, MLPMap)}


def heads_to_tensors(heads: Mapping[str, nn.Module]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Named float arrays and a JSON-able description of `heads` (name -> module).

    Tensors are keyed "<name>/<parameter>" (e.g. "Pneumonia/residual_1/head/linear.weight").
    A module that appears in several heads (the same object) is stored once and referred
    to by name. Pass both to TensorDictDataset as {"tensors": ..., "metadata": ...}.
    """
    tensors: dict[str, np.ndarray] = {}
    stored: dict[int, str] = {}

    def describe(module: nn.Module, prefix: str) -> dict[str, Any]:
        if id(module) in stored:
            return {"ref": stored[id(module)]}
        stored[id(module)] = prefix
        if isinstance(module, ResidualHead):
            return {
                "kind": ResidualHead.kind,
                "prefix": prefix,
                "head": describe(module.head, f"{prefix}/head"),
                "map": None if module.map is None else describe(module.map, f"{prefix}/map"),
            }
        kind = getattr(module, "kind", None)
        if kind not in _KINDS:
            raise TypeError(f"cannot store a {type(module).__name__}: only {sorted(_KINDS)} and residual heads")
        for key, value in module.state_dict().items():
            tensors[f"{prefix}/{key}"] = value.detach().cpu().numpy().copy()
        return {"kind": kind, "prefix": prefix, "config": module.config()}

    entries = {}
    for name, module in heads.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"head names must be non-empty strings, got {name!r}")
        entries[name] = describe(module, name)
    return tensors, {"format": "medclip_residuals.heads", "version": FORMAT_VERSION, "heads": entries}


def heads_from_tensors(tensors: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, nn.Module]:
    """Rebuild the modules that `heads_to_tensors` stored (in eval mode, float64)."""
    if metadata.get("format") != "medclip_residuals.heads":
        raise ValueError(f"metadata does not describe heads (format={metadata.get('format')!r})")
    if int(metadata.get("version", -1)) > FORMAT_VERSION:
        raise ValueError(f"heads were stored by a newer format version {metadata['version']}")
    built: dict[str, nn.Module] = {}

    def build(spec: Mapping[str, Any]) -> nn.Module:
        if "ref" in spec:
            if spec["ref"] not in built:
                raise ValueError(f"stored heads refer to {spec['ref']!r} before it is defined")
            return built[spec["ref"]]
        kind, prefix = spec["kind"], spec["prefix"]
        if kind == ResidualHead.kind:
            head = build(spec["head"])
            module: nn.Module = ResidualHead(head, None if spec["map"] is None else build(spec["map"]))
        elif kind in _KINDS:
            module = _KINDS[kind](**spec["config"])
            state = {}
            for key in module.state_dict():
                full = f"{prefix}/{key}"
                if full not in tensors:
                    raise KeyError(f"stored heads lack the tensor {full!r}")
                state[key] = torch.as_tensor(np.asarray(tensors[full]))
            module.load_state_dict(state)
        else:
            raise ValueError(f"unknown head kind {kind!r} at {prefix!r}")
        built[prefix] = module
        return module.eval()

    return {name: build(spec) for name, spec in metadata["heads"].items()}
