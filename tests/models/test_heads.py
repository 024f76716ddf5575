"""Torch heads give scikit-learn's probabilities, stay differentiable, and store safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medclip_residuals.datasets.tensor_dict import TensorDictDataset
from medclip_residuals.models.heads import (
    LogisticHead,
    MLPMap,
    ResidualHead,
    RidgeMap,
    heads_from_tensors,
    heads_to_tensors,
    logistic_head_from_sklearn,
    map_from_sklearn,
    mlp_map_from_sklearn,
    ridge_map_from_sklearn,
)

DIM = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    i = rng.normal(size=(120, DIM)).astype(np.float32) / 4
    w = rng.normal(size=(120, DIM)).astype(np.float32) / 4
    y = (i[:, 0] - w[:, 1] + rng.normal(scale=0.2, size=120) > 0).astype(int)
    return i, w, y


@pytest.mark.parametrize("scaled", [False, True])
def test_logistic_head_gives_sklearn_probabilities(data, scaled):
    i, _, y = data
    model = LogisticRegression(C=0.5, max_iter=1000)
    model = make_pipeline(StandardScaler(), model) if scaled else model
    model.fit(i, y)
    head = logistic_head_from_sklearn(model)
    with torch.no_grad():
        probability = head(torch.from_numpy(i)).numpy()
        single = head(torch.from_numpy(i[0])).item()
    np.testing.assert_allclose(probability, model.predict_proba(i)[:, 1], atol=1e-6, rtol=0)
    assert single == pytest.approx(model.predict_proba(i[:1])[0, 1], abs=1e-6)
    float32 = logistic_head_from_sklearn(model).float()
    with torch.no_grad():
        np.testing.assert_allclose(float32(torch.from_numpy(i)).numpy(), model.predict_proba(i)[:, 1], atol=1e-5)


@pytest.mark.parametrize("estimator", [Ridge(alpha=0.3), RidgeCV(alphas=[0.1, 1.0]), LinearRegression(), make_pipeline(StandardScaler(), Ridge())])
def test_ridge_map_gives_sklearn_outputs(data, estimator):
    i, w, _ = data
    estimator.fit(i, w)
    module = ridge_map_from_sklearn(estimator)
    assert isinstance(map_from_sklearn(estimator), RidgeMap)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(i)).numpy(), estimator.predict(i), atol=1e-6, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_map_gives_sklearn_outputs(data, activation):
    i, w, _ = data
    estimator = make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(8, 6), activation=activation, max_iter=50, random_state=0)
    )
    with pytest.warns(Warning):  # 50 iterations do not converge; the conversion must still be exact
        estimator.fit(i, w)
    module = mlp_map_from_sklearn(estimator)
    assert isinstance(module, MLPMap) and isinstance(map_from_sklearn(estimator), MLPMap)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(i)).numpy(), estimator.predict(i), atol=1e-6, rtol=0)


def test_residual_heads_match_sklearn_on_residuals(data):
    i, w, y = data
    g1 = make_pipeline(StandardScaler(), LogisticRegression()).fit(i - w, y)
    head_1 = ResidualHead(logistic_head_from_sklearn(g1))
    f = Ridge(alpha=1.0).fit(i, w)
    r2 = f.predict(i) - w
    g2 = make_pipeline(StandardScaler(), LogisticRegression()).fit(r2, y)
    head_2 = ResidualHead(logistic_head_from_sklearn(g2), ridge_map_from_sklearn(f))
    ti, tw = torch.from_numpy(i), torch.from_numpy(w)
    with torch.no_grad():
        np.testing.assert_allclose(head_1(ti, tw).numpy(), g1.predict_proba(i - w)[:, 1], atol=1e-6, rtol=0)
        np.testing.assert_allclose(head_2(ti, tw).numpy(), g2.predict_proba(r2)[:, 1], atol=1e-6, rtol=0)
        np.testing.assert_allclose(head_2.residual(ti, tw).numpy(), r2, atol=1e-6)
    with pytest.raises(ValueError, match="equal widths"):
        head_1(ti, tw[:, :4])


def test_heads_are_differentiable_with_the_analytic_gradient(data):
    i, _, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(i, y)
    head = logistic_head_from_sklearn(model)
    x = torch.from_numpy(i[:3]).clone().requires_grad_(True)
    p = head(x)
    p.sum().backward()
    expected = (p * (1 - p)).detach()[:, None] * head.linear.weight.detach()
    np.testing.assert_allclose(x.grad.numpy(), expected.numpy().astype(np.float32), rtol=1e-5)
    # through a residual head with a map, the gradient reaches i along both paths
    f = Ridge().fit(i, i[:, ::-1])
    residual = ResidualHead(head, ridge_map_from_sklearn(f))
    x = torch.from_numpy(i[:2]).clone().requires_grad_(True)
    w = torch.zeros(2, DIM, requires_grad=True)
    residual(x, w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert w.grad.abs().sum() > 0


def test_tensors_round_trip_through_safetensors_with_a_shared_map(tmp_path, data):
    i, w, y = data
    f = ridge_map_from_sklearn(Ridge().fit(i, w))
    g = logistic_head_from_sklearn(LogisticRegression().fit(i, y))
    heads = {"map": f, "A/image": g, "A/residual_2": ResidualHead(g, f), "B/residual_2": ResidualHead(g, f)}
    tensors, metadata = heads_to_tensors(heads)
    # the map and the head are stored once each, however many heads use them
    assert sorted(tensors) == ["A/image/linear.bias", "A/image/linear.weight", "map/linear.bias", "map/linear.weight"]
    dataset = TensorDictDataset(filepath=str(tmp_path / "heads.safetensors"))
    dataset.save({"tensors": tensors, "metadata": metadata})
    loaded = dataset.load()
    rebuilt = heads_from_tensors(loaded["tensors"], loaded["metadata"])
    assert rebuilt["B/residual_2"].map is rebuilt["map"] is rebuilt["A/residual_2"].map
    ti, tw = torch.from_numpy(i), torch.from_numpy(w)
    with torch.no_grad():
        for name in ("A/image", "map"):
            np.testing.assert_array_equal(rebuilt[name](ti).numpy(), heads[name](ti).numpy())
        np.testing.assert_array_equal(rebuilt["B/residual_2"](ti, tw).numpy(), heads["B/residual_2"](ti, tw).numpy())
    mlp = MLPMap([DIM, 5, 3], activation="tanh")
    again = heads_from_tensors(*heads_to_tensors({"mlp": mlp}))["mlp"]
    with torch.no_grad():
        np.testing.assert_array_equal(again(ti).numpy(), mlp(ti).numpy())


def test_conversion_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    multiclass = LogisticRegression().fit(x, np.arange(30) % 3)
    with pytest.raises(ValueError, match="binary"):
        logistic_head_from_sklearn(multiclass)
    with pytest.raises(TypeError, match="expected a LogisticRegression"):
        logistic_head_from_sklearn(Ridge().fit(x, x[:, 0]))
    with pytest.raises(TypeError, match="cannot store a Linear"):
        heads_to_tensors({"x": torch.nn.Linear(2, 2)})
    tensors, metadata = heads_to_tensors({"h": LogisticHead(3)})
    with pytest.raises(KeyError, match="h/linear.bias"):
        heads_from_tensors({"h/linear.weight": tensors["h/linear.weight"]}, metadata)
    with pytest.raises(ValueError, match="does not describe heads"):
        heads_from_tensors(tensors, {})
