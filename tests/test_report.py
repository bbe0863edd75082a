"""freqlens.report.analyze / Report: honest operators, model left as found, marked skips, exact round trip."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from freqlens.report import Report, analyze
from freqlens.report.measure import exact_operator_norm
from freqlens.spectral import register_rule, unregister_rule
from models_zoo import ZOO, seeded
from test_layer_rules import CircularWrapper, CircularWrapperRule


def _dense_operator(module: nn.Module, input_shape: tuple[int, ...]) -> np.ndarray:
    """Independent route: the autograd Jacobian of the float64 layer (bias removed), as a matrix."""
    twin = copy.deepcopy(module).double()
    if getattr(twin, "bias", None) is not None:
        with torch.no_grad():
            twin.bias.zero_()
    x = torch.zeros(1, *input_shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(twin, x)
    return jac.reshape(-1, math.prod(input_shape)).numpy()


@settings(max_examples=8)
@given(
    cin=st.integers(1, 3),
    cout=st.integers(1, 3),
    k=st.sampled_from([1, 2, 3, 5]),
    stride=st.sampled_from([1, 2]),
    pad=st.integers(1, 2),
    size=st.integers(6, 9),
    mode=st.sampled_from(["zeros", "reflect", "replicate"]),
    seed=st.integers(0, 2**16),
)
def test_true_operator_norm_equals_dense_svd(
    cin: int, cout: int, k: int, stride: int, pad: int, size: int, mode: str, seed: int
) -> None:
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, padding_mode=mode)
    if size + 2 * pad < k or (mode != "zeros" and pad >= size):
        return
    net = nn.Sequential(conv)
    report = analyze(net, input_shape=(cin, size, size), progress=False)
    (row,) = report.rows
    dense = _dense_operator(conv, (cin, size, size))
    true = np.linalg.svd(dense, compute_uv=False)
    assert row["operator_norm"] == pytest.approx(true[0], rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(report.arrays["w0_true_sv"], true, rtol=1e-8, atol=1e-12)
    if mode == "zeros" and (size + 2 * pad) % stride:
        assert row["operator"].startswith("skipped:") and "does not divide the grid" in row["operator"]
    elif mode == "zeros":
        assert row["operator"] == "zero padding: circulant embedding, upper bound"
        # interlacing: the circulant embedding bounds the cropped operator from above
        assert row["bound_norm"] >= true[0] - 1e-9
    else:
        assert row["operator"].startswith("skipped:") and mode in row["operator"]


def test_exact_operator_norm_on_a_known_matrix() -> None:
    a = torch.from_numpy(np.random.default_rng(1).standard_normal((7, 5)))
    norm = exact_operator_norm(lambda x: x.reshape(1, 5) @ a.T, (5,))
    assert norm == pytest.approx(np.linalg.svd(a.numpy(), compute_uv=False)[0], rel=1e-12)


def test_circular_rows_are_exact() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    report = analyze(nn.Sequential(conv), input_shape=(2, 6, 6), progress=False)
    (row,) = report.rows
    assert row["operator"] == "circular: exact" and row["exact"]
    true = np.linalg.svd(_dense_operator(conv, (2, 6, 6)), compute_uv=False)
    np.testing.assert_allclose(np.sort(report.arrays["w0_sv"].reshape(-1))[::-1], true, rtol=1e-10, atol=1e-12)


def _mixed_mode_model() -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a model in train mode
    return net


def test_model_left_exactly_as_found() -> None:
    net = _mixed_mode_model()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    analyze(net, torch.rand(12, 3, 8, 8), batch_size=5, progress=False)
    assert [m.training for m in net.modules()] == modes
    after = net.state_dict()
    assert state.keys() == after.keys()
    for k, v in state.items():
        assert torch.equal(v, after[k]), k


def test_save_load_is_exact_and_tables(tmp_path) -> None:
    net = seeded(ZOO["unet"][0], **ZOO["unet"][1])
    report = analyze(net, torch.rand(6, 3, 16, 16), batch_size=4, progress=False)
    loaded = Report.load(report.save(tmp_path / "rep"))
    assert loaded == report
    assert loaded.arrays.keys() == report.arrays.keys()
    tables = loaded.tables()
    layers = tables["layers"]
    assert len(layers["layer"]) == len(report.rows)
    assert set(layers["operator"]) <= {
        "circular: exact",
        "zero padding: circulant embedding, upper bound",
        "transposed conv: circular model, PyTorch's edges differ",
    } | {op for op in layers["operator"] if op.startswith("skipped: ")}
    w = tables["weights"]
    assert len({len(v) for v in w.values()}) == 1
    # signed frequencies in (-n/2, n/2]
    grid = report.rows[0]["grid"]
    assert w["k"].min() > -grid[0] / 2 and w["k"].max() <= grid[0] / 2
    assert "\n" not in repr(report) and len(repr(report)) < 300  # a notebook line, not a dump of arrays
    figs = loaded.plot()
    assert {"operator_norms", "radial_energy", "p_low", "cbn", "true_vs_bound"} <= set(figs)


def test_pandas_and_html_views() -> None:
    pytest.importorskip("pandas", reason="pandas is the optional 'report' extra")
    pytest.importorskip("jinja2", reason="jinja2 is the optional 'report' extra")
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")
    )
    report = analyze(net, torch.rand(3, 1, 8, 8), progress=False)
    df = report.to_pandas()
    assert list(df["layer"]) == ["0", "2"] and list(df["operator"])[1] == "circular: exact"
    assert len(report.to_pandas("weights")) == report.arrays["w0_sv"].size + report.arrays["w1_sv"].size
    html = report._repr_html_()
    assert "<table" in html and "zero padding: circulant embedding, upper bound" in html and "<img" not in html
    with pytest.raises(ValueError, match="table must be one of"):
        report.to_pandas("nope")


def test_functional_conv_goes_through_the_registry_with_its_operator_norm() -> None:
    net = seeded(ZOO["unet"][0], **ZOO["unet"][1])
    rng = torch.get_rng_state()
    report = analyze(net, input_shape=(3, 16, 16), progress=False)
    assert torch.equal(rng, torch.get_rng_state())  # the functional conv's module is built without drawing weights
    i, row = next((i, r) for i, r in enumerate(report.rows) if r["functional"])
    # F.conv2d(padding=1) is measured as the nn.Conv2d computing it: the zero-padding rule of the registry
    assert row["layer"] == "<model>:F.conv2d#0" and row["status"] == "upper bound"
    assert row["operator"] == "zero padding: circulant embedding, upper bound" and row["grid"] == [18, 18]
    assert row["groups"] == 3 and row["padding"] == [1, 1]
    assert row["bound_norm"] >= row["operator_norm"] - 1e-9 and report.arrays[f"w{i}_sv"].shape == (18, 18, 3)
    smooth = net.smooth.double()
    dense = torch.autograd.functional.jacobian(
        lambda x: F.conv2d(x, smooth, padding=1, groups=3), torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    ).reshape(-1, 768)
    assert row["operator_norm"] == pytest.approx(float(torch.linalg.svdvals(dense)[0]), rel=1e-8)
    assert report.decoder is not None and report.decoder.get("skipped") == "no data given"


def _true_singular_values(forward, input_shape: tuple[int, ...]) -> np.ndarray:
    """Independent route: singular values of the autograd Jacobian of a float64 linear map."""
    jac = torch.autograd.functional.jacobian(forward, torch.zeros(1, *input_shape, dtype=torch.float64))
    return np.linalg.svd(jac.reshape(-1, math.prod(input_shape)).numpy(), compute_uv=False)


class _UserNet(nn.Module):
    """Two user layers with a registered rule, a functional 1x1 conv and a functional 1-D conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = CircularWrapper(2, 3, 3)
        self.b = CircularWrapper(3, 2, 5)
        self.mix = nn.Parameter(torch.randn(2, 2, 1, 1))
        self.line = nn.Parameter(torch.randn(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(self.b(torch.relu(self.a(x))), self.mix)
        return y + F.conv1d(y.flatten(2), self.line, padding=1).reshape(y.shape[0], 1, *y.shape[2:])


def test_user_registered_rule_is_exact_in_the_report_and_functional_convs_use_the_registry() -> None:
    torch.manual_seed(5)
    net = _UserNet().double()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    register_rule(CircularWrapper, CircularWrapperRule())
    try:
        report = analyze(net, x, progress=False)
    finally:
        unregister_rule(CircularWrapper)
    rows = {r["layer"]: (i, r) for i, r in enumerate(report.rows)}
    # the registered layers are rows of their own (their inner F.conv2d is their own computation), exact
    assert list(rows) == ["a", "b", "<model>:F.conv2d#0", "<model>:F.conv1d#1"]
    for name, shape in (("a", (2, 8, 8)), ("b", (3, 8, 8))):
        i, row = rows[name]
        assert row["status"] == "exact" and row["operator"] == "user-circular-conv: exact"
        assert row["act_status"] == "measured"
        module = getattr(net, name)
        true = _true_singular_values(lambda t, m=module: m(t) - m(torch.zeros_like(t)), shape)
        values = np.sort(report.arrays[f"w{i}_sv"].reshape(-1))[::-1]
        np.testing.assert_allclose(values, true, rtol=1e-10, atol=1e-12)
        assert row["operator_norm"] == pytest.approx(true[0], rel=1e-12)
    # a functional 1x1 conv without padding is circular: exact by the nn.Conv2d rule
    i, row = rows["<model>:F.conv2d#0"]
    assert row["status"] == "exact" and row["operator"] == "circular: exact" and row["functional"]
    true = _true_singular_values(lambda t: F.conv2d(t, net.mix), (2, 8, 8))
    np.testing.assert_allclose(np.sort(report.arrays[f"w{i}_sv"].reshape(-1))[::-1], true, rtol=1e-10, atol=1e-12)
    # a functional zero-padded 1-D conv: the nn.Conv1d rule on the 1xL grid, an upper bound, with the true norm
    _, row = rows["<model>:F.conv1d#1"]
    assert row["status"] == "upper bound" and row["operator"] == "zero padding: circulant embedding, upper bound"
    assert row["grid"] == [1, 66]
    true = _true_singular_values(lambda t: F.conv1d(t, net.line, padding=1), (2, 64))
    assert row["operator_norm"] == pytest.approx(true[0], rel=1e-8)
    assert row["bound_norm"] >= true[0] - 1e-9


def test_without_its_rule_a_user_layer_is_measured_through_its_functional_conv() -> None:
    torch.manual_seed(6)
    net = nn.Sequential(CircularWrapper(2, 3, 3)).double()
    report = analyze(net, input_shape=(2, 8, 8), progress=False)
    (row,) = report.rows
    # F.conv2d on the circularly pre-padded 10x10 input, output 8x8: a crop of the circular operator
    assert row["layer"] == "0:F.conv2d#0" and row["input_shape"] == [2, 10, 10]
    assert row["status"] == "approximate" and row["operator"] == "crop of the circular operator: approximation"
    true = _true_singular_values(lambda t: F.conv2d(t, net[0].weight), (2, 10, 10))
    assert row["operator_norm"] == pytest.approx(true[0], rel=1e-8)
    np.testing.assert_allclose(report.arrays["w0_true_sv"], true[: report.rows[0]["true_values"]], rtol=1e-8,
                               atol=1e-12)  # fmt: skip


def test_conv3d_is_marked_with_exact_norm() -> None:
    factory, kwargs, shape, _ = ZOO["conv3d"]
    net = seeded(factory, **kwargs)
    report = analyze(net, torch.rand(4, *shape), progress=False)
    assert report.rows and all(r["status"] == "skipped" and r["operator_norm"] > 0 for r in report.rows)
    assert "3-D frequency grids" in report.rows[0]["operator"]
    first = next(m for m in net.modules() if isinstance(m, nn.Conv3d))
    true = np.linalg.svd(_dense_operator(first, shape), compute_uv=False)[0]
    assert report.rows[0]["operator_norm"] == pytest.approx(true, rel=1e-8)


def test_conv1d_net_rows_are_exact_or_bounded_with_their_true_norms() -> None:
    factory, kwargs, shape, _ = ZOO["conv1d"]
    net = seeded(factory, **kwargs)
    report = analyze(net, torch.rand(4, *shape), progress=False)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert [r["status"] for r in report.rows] == ["upper bound", "upper bound", "exact"]  # zero pad, zero pad, 1x1
    sizes = [shape, (convs[1].in_channels, shape[1]), (convs[2].in_channels, shape[1] // 2)]
    for i, (row, conv, size) in enumerate(zip(report.rows, convs, sizes)):
        true = np.linalg.svd(_dense_operator(conv, size), compute_uv=False)
        assert row["operator_norm"] == pytest.approx(true[0], rel=1e-8) and row["act_status"] == "measured"
        if row["status"] == "exact":
            values = np.sort(report.arrays[f"w{i}_sv"].reshape(-1))[::-1]
            np.testing.assert_allclose(values, true, rtol=1e-10, atol=1e-12)


def test_layer_without_rule_is_a_marked_row_and_strict_raises() -> None:
    net = seeded(ZOO["dcgan"][0], **ZOO["dcgan"][1])  # ConvTranspose2d(k4, s1, p0) has no rule today
    report = analyze(net, torch.randn(4, 8, 1, 1), progress=False)
    first = report.rows[0]
    assert first["status"] == "skipped" and "kernel - 2*padding == stride" in first["operator"]
    assert first["operator_norm"] > 0
    assert all(r["status"] != "skipped" for r in report.rows[1:])
    assert "layers" in report.decoder
    with pytest.raises(ValueError, match="kernel - 2\\*padding"):
        analyze(net, torch.randn(4, 8, 1, 1), strict=True, progress=False)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_every_row_is_exact_bounded_with_norm_or_marked(name: str) -> None:
    factory, kwargs, shape, _ = ZOO[name]
    net = seeded(factory, **kwargs)
    report = analyze(net, torch.rand(3, *shape), batch_size=3, progress=False)
    assert report.rows
    for row in report.rows:
        if row["status"] == "exact":
            assert row["operator"] == "circular: exact"
        elif row["status"] in ("upper bound", "approximate"):
            assert row["operator_norm"] is not None and row["operator_norm"] > 0
        else:
            assert row["status"] == "skipped" and row["operator"].startswith("skipped: ")
            assert row["operator_norm"] is not None


def test_bad_inputs_give_one_line_errors() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    with pytest.raises(ValueError, match="data.*uint8.*divide by 255"):
        analyze(net, torch.zeros(2, 1, 8, 8, dtype=torch.uint8), progress=False)
    with pytest.raises(ValueError, match="give data .* or input_shape"):
        analyze(net, progress=False)
    with pytest.raises(ValueError, match="layers \\['nope'\\]"):
        analyze(net, input_shape=(1, 8, 8), layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="input_shape .* does not match"):
        analyze(net, torch.zeros(2, 1, 8, 8), input_shape=(1, 9, 9), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        analyze(net, torch.zeros(2, 1, 8, 8), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="device must be"):
        analyze(net, input_shape=(1, 8, 8), device="gpu0", progress=False)
    broken = copy.deepcopy(net)
    with torch.no_grad():
        broken[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="model has NaN"):
        analyze(broken, input_shape=(1, 8, 8), progress=False)


def test_float16_data_is_upcast_with_a_note() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
    x = torch.rand(4, 1, 8, 8)
    r16 = analyze(net, x.half(), progress=False)
    assert any("float16" in n for n in r16.meta["notes"])
    r32 = analyze(net, x.half().float(), progress=False)
    np.testing.assert_array_equal(r16.arrays["a0_sv"], r32.arrays["a0_sv"])


def test_dataset_and_dataloader_give_the_same_numbers_and_are_deterministic() -> None:
    net = _mixed_mode_model()
    x = torch.rand(10, 3, 8, 8)
    y = torch.zeros(10, dtype=torch.long)
    ds = torch.utils.data.TensorDataset(x, y)
    a = analyze(net, x, batch_size=4, progress=False)
    b = analyze(net, ds, batch_size=4, progress=False)
    c = analyze(net, torch.utils.data.DataLoader(ds, batch_size=4), progress=False)
    for other in (b, c):  # same images in the same batches: the same numbers
        assert other.arrays.keys() == a.arrays.keys()
        for k in a.arrays:
            np.testing.assert_array_equal(other.arrays[k], a.arrays[k])
    again = analyze(net, x, batch_size=4, progress=False)
    assert all(np.array_equal(again.arrays[k], a.arrays[k]) for k in a.arrays)
    limited = analyze(net, x, batch_size=4, max_images=5, progress=False)
    assert limited.meta["images"] == 5
