"""Smoke test of the benchmark report engine on tiny images: files, rows, columns, verdicts.

Timings are never asserted (this machine is shared); only that the report is complete and
consistent with what was measured.
"""

from __future__ import annotations

import json

import pytest
import torch

from vbkernels import benchmark
from vbkernels._dispatch import load_backend
from vbkernels.benchmark import label_table, providers, targets
from vbkernels.benchmark.ops import OPS, OPS_BY_NAME
from vbkernels.benchmark.runner import Cell, Settings
from vbkernels.benchmark.workloads import CPU_TARGET, GPU_TARGET, INSTANCE_TARGET, Workload

TINY = [Workload("tiny-u8-nhwc", 2, 8, 12, "hwc", "uint8"),
        Workload("tiny-f16-nchw", 1, 9, 7, "chw", "float16")]
PROVIDERS = ["numpy", "hilbertmap", "torch", "triton"]
COLUMNS = ("| workload | provider | measured | ms (IQR) | Mpx/s | frames/s | GB/s | % memcpy "
           "| × numpy | peak MiB | target |")


def _has_hilbertmap() -> bool:
    return providers.unavailable(providers.PROVIDERS_BY_NAME["hilbertmap"],
                                 torch.device("cpu")) is None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    settings = Settings(device=torch.device("cpu"), workloads=TINY, ops=list(OPS),
                        providers=[providers.PROVIDERS_BY_NAME[p] for p in PROVIDERS],
                        repeats=2, min_repeats=1, cell_seconds=5.0, log=None)
    data = benchmark.run_report(settings, out, "smoke", "smoke test")
    return out, data


def _expected_status(provider: str, op: str) -> str:
    if provider == "triton":
        return "not run"  # the interpreter is never timed
    if op == "decode_instances_k40":
        return "ok" if provider in providers.INSTANCE_PROVIDERS else "not run"
    if provider == "hilbertmap":
        depth_op = op in providers.HILBERTMAP_OPS
        return "ok" if depth_op and _has_hilbertmap() else "not run"
    if OPS_BY_NAME[op].api not in load_backend(provider).ops:
        return "not run"  # an op family a baseline backend has not (yet) implemented
    return "ok"


def test_json_has_one_result_per_cell_with_consistent_figures(report):
    out, _ = report
    data = json.loads((out / "smoke.json").read_text())
    for key in ("device_name", "versions", "git_commit", "settings", "memcpy", "targets"):
        assert key in data
    assert data["versions"]["torch"] == torch.__version__
    cells = {(c["workload"], c["op"], c["provider"]): c for c in data["results"]}
    assert len(cells) == len(data["results"]) == len(TINY) * len(OPS) * len(PROVIDERS)
    for (_, op, provider), cell in cells.items():
        assert cell["status"] == _expected_status(provider, op), cell
        if cell["status"] != "ok":
            assert cell["reason"]
            continue
        times = cell["times_s"]
        assert len(times) == cell["repeats"] and min(times) > 0
        assert cell["min_s"] <= cell["q1_s"] <= cell["median_s"] <= cell["q3_s"] <= cell["max_s"]
        assert cell["mpx_s"] == pytest.approx(cell["pixels"] / cell["median_s"] / 1e6)
        traffic = cell["bytes_read"] + cell["bytes_written"]
        assert cell["gb_s"] == pytest.approx(traffic / cell["median_s"] / 1e9)
        assert cell["pct_memcpy"] > 0 and cell["peak_extra_bytes"] >= 0
        assert not cell["cropped"]
        if provider == "numpy":
            assert cell["speedup_vs_numpy"] == pytest.approx(1.0)


def test_bytes_match_the_public_call():
    # 2x8x12 uint8 NHWC: 576 bytes in; depth out as float32 (4 bytes/px), labels as int64.
    from vbkernels.benchmark.ops import OPS_BY_NAME, build_case
    from vbkernels.benchmark.workloads import make_images

    w = TINY[0]
    images = make_images(w, torch.device("cpu"))
    depth = build_case(OPS_BY_NAME["decode_depth"], w, images)
    assert (depth.bytes_read, depth.bytes_written) == (576, 192 * 4)
    seg = build_case(OPS_BY_NAME["decode_segmentation_k19"], w, images)
    assert (seg.bytes_read, seg.bytes_written) == (576 + 19 * 3, 192 * 8)
    normals = build_case(OPS_BY_NAME["decode_normals"], w, images)
    assert normals.bytes_written == 576 * 4
    encode = build_case(OPS_BY_NAME["encode_depth"], w, images)
    assert (encode.bytes_read, encode.bytes_written) == (192 * 4, 576)
    seg40 = build_case(OPS_BY_NAME["decode_segmentation_k40"], w, images)
    assert (seg40.bytes_read, seg40.bytes_written) == (576 + 40 * 3, 192 * 8)
    # decode_instances: int32 labels, plus per image a (1, 3) float32 palette (one tile
    # colour fits an 8x12 image) and an int64 count.
    inst = build_case(OPS_BY_NAME["decode_instances_k40"], w, images)
    assert (inst.bytes_read, inst.bytes_written) == (576, 192 * 4 + 2 * (3 * 4 + 8))


def test_markdown_lists_every_measured_cell_and_every_reason(report):
    out, data = report
    text = (out / "smoke.md").read_text()
    assert text.count(COLUMNS) == len(OPS)
    ok = [c for c in data["results"] if c["status"] == "ok"]
    measured_rows = [line for line in text.splitlines()
                     if line.startswith("| tiny-") and line.count("|") == COLUMNS.count("|")]
    assert len(measured_rows) == len(ok)
    assert "## Not run" in text and "interpreter" in text
    assert "## Targets" in text  # CPU targets: not measured on these workloads
    assert f"not measured: no CPU path measured decode_depth on {CPU_TARGET}" in text


def test_png_is_written_or_the_reason_is_recorded(report):
    out, data = report
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # e.g. the GPU image: the JSON says why, and no stray file is left
        assert data["png"] is None and "matplotlib" in data["png_not_written"]
        assert not (out / "smoke.png").exists()
        return
    assert data["png"] == "smoke.png" and data["png_not_written"] is None
    assert (out / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slow_provider_is_timed_on_a_crop(tmp_path):
    big = Workload("crop-u8-nhwc", 2, 64, 96, "hwc", "uint8")
    settings = Settings(device=torch.device("cpu"), workloads=[big], ops=[OPS[0]],
                        providers=[providers.PROVIDERS_BY_NAME["torch"]], repeats=1,
                        min_repeats=1, cell_seconds=1e-9, log=None)
    data = benchmark.run_report(settings, tmp_path, "crop", "crop test")
    (cell,) = data["results"]
    assert cell["status"] == "ok" and cell["cropped"]
    assert cell["measured"] == "1x24x16"  # the probe: a quarter of one frame's height, width
    assert "(cropped)" in (tmp_path / "crop.md").read_text()


def test_cli_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--ops", "decode_everything", "--device", "cpu"])
    assert exc.value.code == 2
    assert "decode_everything" in capsys.readouterr().err


def _cell(op, workload, provider, mpx_s, frames_s=None, pct=None):
    data = {"mpx_s": mpx_s, "frames_s": frames_s or mpx_s, "pct_memcpy": pct}
    return Cell(op, workload, provider, "ok", "", data)


def test_cpu_verdicts_pick_the_best_path_against_hilbertmap():
    cells = [_cell("decode_depth", CPU_TARGET, "hilbertmap", 1.0, 0.5),
             _cell("decode_depth", CPU_TARGET, "numpy", 20.0, 10.0),
             _cell("decode_depth", CPU_TARGET, "cpu", 150.0, 72.0)]
    fps, speed, _ = targets.cpu_verdicts(cells)
    assert (fps.provider, fps.verdict, speed.verdict) == ("cpu", "met", "met")
    slow = targets.cpu_verdicts(cells[:2])
    assert [v.verdict for v in slow[:2]] == ["missed", "missed"]


def test_cpu_verdicts_judge_decode_instances_against_segmentation():
    from vbkernels.benchmark.workloads import CPU_INSTANCE_TARGET

    def judged(instances_mpx_s):
        cells = [_cell("decode_segmentation_k40", CPU_INSTANCE_TARGET, "cpu", 50.0),
                 _cell("decode_instances_k40", CPU_INSTANCE_TARGET, "cpu", instances_mpx_s)]
        verdict = targets.cpu_verdicts(cells)[-1]
        assert (verdict.op, verdict.workload, verdict.provider) == (
            "decode_instances_k40", CPU_INSTANCE_TARGET, "cpu")
        return verdict.measured, verdict.verdict

    assert judged(12.5) == ("4.00x", "met")
    assert judged(5.0) == ("10.00x", "missed")
    assert targets.cpu_verdicts([])[-1].verdict.startswith("not measured")


def test_gpu_verdicts_judge_memcpy_share_and_ratios():
    cells = [_cell("decode_depth", GPU_TARGET, "triton", 3000.0, pct=92.0),
             _cell("decode_depth", GPU_TARGET, "torch_compile", 1000.0),
             _cell("decode_depth", GPU_TARGET, "torch", 200.0)]
    found = {(v.target, v.op, v.provider): v.verdict for v in targets.gpu_verdicts(cells)}
    assert found[(">= 90% of memcpy", "decode_depth", "triton")] == "met"
    assert found[(">= 1.5x torch_compile", "decode_depth", "triton")] == "met"
    assert found[(">= 20x torch", "decode_depth", "triton")] == "missed"  # 15x
    assert found[(">= 85% of memcpy", "decode_depth", "cuda")].startswith("not measured")
    assert found[(">= 80% of memcpy", "decode_segmentation_k19_u8", "triton")].startswith(
        "not measured")


def test_markdown_and_png_can_be_rewritten_from_the_json(report, tmp_path):
    out, _ = report
    assert benchmark.main(["--from-json", str(out / "smoke.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "smoke.md").read_text() == (out / "smoke.md").read_text()


def test_merge_adds_cells_measured_elsewhere_and_rejudges(report, tmp_path, monkeypatch):
    """torch.compile measured op by op in other processes joins the main report."""
    import json

    out, data = report
    main_part = dict(data, results=[r for r in data["results"] if r["provider"] != "numpy"])
    other = dict(data, results=[r for r in data["results"] if r["provider"] == "numpy"])
    (tmp_path / "main.json").write_text(json.dumps(main_part))
    (tmp_path / "other.json").write_text(json.dumps(other))
    monkeypatch.setenv("VBKERNELS_GIT_COMMIT", "given-commit")
    assert benchmark.main(["--from-json", str(tmp_path / "main.json"), "--merge",
                           str(tmp_path / "other.json"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / f"{data['stem']}.json").read_text())
    key = [(r["op"], r["workload"], r["provider"]) for r in merged["results"]]
    assert sorted(key) == sorted((r["op"], r["workload"], r["provider"]) for r in data["results"])
    numpy_ok = {(r["op"], r["workload"]) for r in other["results"] if r["status"] == "ok"}
    ok = [r for r in merged["results"] if r["status"] == "ok" and r["provider"] != "numpy"
          and (r["op"], r["workload"]) in numpy_ok]
    assert ok and all(r["speedup_vs_numpy"] is not None for r in ok)  # derived again
    from vbkernels.benchmark import command
    assert command._git_commit() == "given-commit"


def test_merge_brings_ops_only_the_other_report_ran(report, tmp_path):
    """The device check times int16/int32 segmentation labels in a second run: its ops join
    the main report's op list, hence its tables."""
    import json

    out, data = report
    extra = "decode_segmentation_k19_i16"
    assert any(r["op"] == extra and r["status"] == "ok" for r in data["results"])
    settings = dict(data["settings"], ops=[op for op in data["settings"]["ops"] if op != extra])
    main_part = dict(data, settings=settings,
                     results=[r for r in data["results"] if r["op"] != extra])
    other = dict(data, settings=dict(data["settings"], ops=[extra]),
                 results=[r for r in data["results"] if r["op"] == extra])
    (tmp_path / "main.json").write_text(json.dumps(main_part))
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert benchmark.main(["--from-json", str(tmp_path / "main.json"), "--merge",
                           str(tmp_path / "other.json"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / f"{data['stem']}.json").read_text())
    assert merged["settings"]["ops"][-1] == extra
    assert f"## {extra}\n" in (tmp_path / "merged" / f"{data['stem']}.md").read_text()


def test_partial_report_is_written_after_each_provider(tmp_path, monkeypatch):
    """A run killed by an outer timeout must still leave the providers it finished."""
    from vbkernels.benchmark import command

    seen = []
    real = command.output.write_markdown

    def spy(path, report, verdicts):
        seen.append((report["partial"], sorted({r["provider"] for r in report["results"]})))
        return real(path, report, verdicts)

    monkeypatch.setattr(command.output, "write_markdown", spy)
    settings = Settings(device=torch.device("cpu"), workloads=TINY, ops=list(OPS)[:1],
                        providers=[providers.PROVIDERS_BY_NAME[p] for p in ("numpy", "torch")],
                        repeats=1, min_repeats=1, cell_seconds=5.0, log=None)
    data = benchmark.run_report(settings, tmp_path, "partial", "partial test")
    # Provider by provider (priority order), each over every workload before the next.
    assert seen == [(True, ["numpy"]), (True, ["numpy"]), (True, ["numpy", "torch"]),
                    (True, ["numpy", "torch"]), (False, ["numpy", "torch"])]
    order = [(r["provider"], r["workload"]) for r in data["results"]]
    assert order == [(p, w.name) for p in ("numpy", "torch") for w in TINY]


# ------------------------------------- decode_instances <= 3x decode_segmentation, 40 colours


def test_instance_ops_decode_the_same_40_colour_tiles():
    """Both k40 ops read the same tiles, on which decode_instances finds every tile colour
    (on random noise it would find nothing)."""
    import vbkernels
    from vbkernels.benchmark.ops import OPS_BY_NAME, build_case, palette40, tile_colours
    from vbkernels.benchmark.workloads import make_images

    for w in (Workload("tiles-u8", 2, 128, 192, "hwc", "uint8"),
              Workload("tiles-f16", 1, 130, 200, "chw", "float16")):
        noise = make_images(w, torch.device("cpu"))
        seg = build_case(OPS_BY_NAME["decode_segmentation_k40"], w, noise)
        inst = build_case(OPS_BY_NAME["decode_instances_k40"], w, noise)
        assert torch.equal(seg.args[0], inst.args[0]) and not torch.equal(seg.args[0], noise)
        assert torch.equal(seg.args[1], palette40(torch.device("cpu")))
        labels, palette, counts = vbkernels.decode_instances(*inst.args, **inst.kwargs,
                                                             backend="torch")
        assert counts.tolist() == [tile_colours(w)] * w.batch
        assert labels.dtype == torch.int32 and labels.shape == (w.batch, w.height, w.width)
        assert bool((labels != 0).all())  # no background
        if w.height % 64 == 0 and w.width % 64 == 0:  # whole tiles: every pixel assigned
            assert bool((labels > 0).all())
        else:  # the 2x8 corner tile is under min_pixels: its pixels are near no colour
            assert int((labels < 0).sum()) == 2 * 8
        found = {tuple(c) for c in palette.round().to(torch.int64)[0].tolist()}
        assert found <= {tuple(c) for c in palette40(torch.device("cpu")).tolist()}
        segmentation = vbkernels.decode_segmentation(*seg.args, backend="torch")
        assert bool((segmentation >= 0).all())  # every pixel is one of the known colours


def test_instance_ops_run_on_torch_triton_and_cpu_only(report):
    _, data = report
    from vbkernels.benchmark.ops import OPS_BY_NAME

    op = OPS_BY_NAME["decode_instances_k40"]
    for provider in providers.PROVIDERS:
        reason = providers.skip_reason(provider, op, torch.uint8)
        if provider.name in ("torch", "triton", "cpu"):
            assert reason is None
        else:
            assert "torch, triton and cpu providers only" in reason, provider.name
    cells = {(c["workload"], c["provider"]): c for c in data["results"]
             if c["op"] == "decode_instances_k40"}
    assert len(cells) == len(TINY) * len(PROVIDERS)
    for w in TINY:
        assert cells[(w.name, "torch")]["status"] == "ok"
        # int32 labels written, plus the palette and counts
        assert cells[(w.name, "torch")]["bytes_written"] > w.pixels * 4
        assert "torch, triton and cpu providers only" in cells[(w.name, "numpy")]["reason"]
        assert "interpreter" in cells[(w.name, "triton")]["reason"]
        seg = [c for c in data["results"] if c["op"] == "decode_segmentation_k40"
               and c["workload"] == w.name and c["provider"] in ("numpy", "torch")]
        assert [c["status"] for c in seg] == ["ok", "ok"]


def test_instance_ops_are_selectable_but_not_cpu_defaults():
    from vbkernels.benchmark import command

    parser = command._parser()
    cpu = command.settings_from(parser.parse_args(["--device", "cpu"]), parser)
    names = [op.name for op in cpu.ops]
    assert "decode_instances_k40" not in names and "decode_segmentation_k40" not in names
    assert "decode_depth" in names
    chosen = command.settings_from(parser.parse_args(
        ["--device", "cpu", "--ops", "decode_segmentation_k40,decode_instances_k40"]), parser)
    assert [op.name for op in chosen.ops] == ["decode_segmentation_k40", "decode_instances_k40"]
    assert [op.name for op in command.default_ops("cuda", False)] == [op.name for op in OPS]
    assert [op.name for op in command.default_ops("cpu", True)] == [op.name for op in OPS]


def test_gpu_verdicts_judge_instances_against_segmentation_k40():
    seg, inst = "decode_segmentation_k40", "decode_instances_k40"
    target = "time <= 3x decode_segmentation_k40 time"
    cells = [_cell(seg, INSTANCE_TARGET, "triton", 1000.0),
             _cell(inst, INSTANCE_TARGET, "triton", 400.0),  # 2.5x the time: met
             _cell(seg, INSTANCE_TARGET, "torch", 100.0),
             _cell(inst, INSTANCE_TARGET, "torch", 20.0),  # 5x the time: missed
             _cell(inst, GPU_TARGET, "triton", 1.0)]  # another workload: not judged
    found = {(v.target, v.op, v.workload, v.provider): v for v in targets.gpu_verdicts(cells)}
    triton = found[(target, inst, INSTANCE_TARGET, "triton")]
    assert (triton.measured, triton.verdict) == ("2.50x", "met")
    torch_info = found[(target + " (information)", inst, INSTANCE_TARGET, "torch")]
    assert (torch_info.measured, torch_info.verdict) == ("5.00x", "missed")
    assert [v for v in found.values() if v.op == inst and v.workload != INSTANCE_TARGET] == []
    missing = {(v.provider, v.verdict) for v in targets.gpu_verdicts(cells[:1])
               if v.op == inst}
    assert missing == {("triton", "not measured: not part of this run"),
                       ("torch", "not measured: not part of this run")}
    assert INSTANCE_TARGET == "b16-1080p-u8-nhwc"


# ------------------------------------------- Triton segmentation: scan vs label table


def test_label_table_section_says_why_it_was_not_run_on_cpu(tmp_path):
    settings = Settings(device=torch.device("cpu"), workloads=TINY[:1],
                        ops=[OPS_BY_NAME["decode_normals"]],
                        providers=[providers.PROVIDERS_BY_NAME["torch"]], repeats=1,
                        min_repeats=1, cell_seconds=5.0, label_table=True, log=None)
    data = benchmark.run_report(settings, tmp_path, "strategies", "smoke test")
    section = json.loads((tmp_path / "strategies.json").read_text())["label_table"]
    assert section == data["label_table"]
    assert section["status"] == "not run" and "CUDA" in section["reason"]
    text = (tmp_path / "strategies.md").read_text()
    assert "## Triton segmentation: distance scan vs label table" in text
    assert section["reason"] in text


def test_label_table_rows_time_scan_lookup_and_build(monkeypatch):
    """The measurement's plumbing on CPU with stand-in kernels (each call is recorded), and
    its Markdown: one row per palette size, the strategy decode_segmentation picks."""
    import vbkernels.triton.segmentation as seg

    calls = []
    monkeypatch.setattr(seg, "decode_path", lambda *args: "rows")
    monkeypatch.setattr(seg, "_decode_by_distance",
                        lambda rgb, pal, labels, *rest: calls.append(("scan", pal.shape[0])))
    monkeypatch.setattr(seg, "build_label_table",
                        lambda pal: calls.append(("build", pal.shape[0])) or torch.zeros(1))
    monkeypatch.setattr(seg, "lookup_labels",
                        lambda rgb, table, pal, *rest: calls.append(("lookup", pal.shape[0])))
    sizes = (seg.TABLE_MIN_K - 1, seg.TABLE_MIN_K)
    rows = label_table.measure(torch.device("cpu"), repeats=2, workload=TINY[0], sizes=sizes)
    assert [r["palette_size"] for r in rows] == list(sizes)
    assert [r["table_used"] for r in rows] == [False, True]
    for k in sizes:
        assert calls.count(("scan", k)) == 3  # one warm-up call, then 2 timed ones
        assert calls.count(("lookup", k)) == 3
        assert calls.count(("build", k)) == 1 + label_table.BUILD_REPEATS + 1  # + the table used
    for row in rows:
        for part in ("scan", "lookup", "build"):
            assert row[part]["q1_s"] <= row[part]["median_s"] <= row[part]["q3_s"]
    text = "\n".join(label_table.markdown({"workload": TINY[0].label, "status": "ok",
                                           "reason": "", "table_min_k": seg.TABLE_MIN_K,
                                           "rows": rows}))
    assert f"| {sizes[0]} |" in text and f"| {sizes[1]} |" in text
    assert text.count("| scan |") == 1 and text.count("| table |") == 1


def test_colormap_section_times_cpu_reference_and_kdtree(tmp_path):
    """The cpu decode_colormap section on a tiny frame: every row filled, in JSON and Markdown."""
    settings = Settings(device=torch.device("cpu"), workloads=TINY[:1],
                        ops=[OPS_BY_NAME["decode_normals"]],
                        providers=[providers.PROVIDERS_BY_NAME["torch"]], repeats=1,
                        min_repeats=1, cell_seconds=5.0, colormap_frame=(16, 24), log=None)
    data = benchmark.run_report(settings, tmp_path, "cmap", "smoke test")
    section = json.loads((tmp_path / "cmap.json").read_text())["colormap"]
    assert section == data["colormap"]
    assert section["status"] == "ok", section["reason"]
    assert [row["frame"] for row in section["rows"]] == ["painted", "jpeg q90"]
    for row in section["rows"]:
        for key in ("cpu_cold", "cpu_warm", "reference", "ckdtree"):
            assert row[key]["median_s"] > 0, key
        assert row["reference_rows"] == 1 and 0 < row["distinct_colours"] <= 16 * 24
    text = (tmp_path / "cmap.md").read_text()
    assert "## cpu decode_colormap vs a SciPy cKDTree query (1x16x24 uint8 hwc)" in text
    assert "| painted |" in text and "| jpeg q90 |" in text and "Target:" in text


def test_colormap_section_says_when_scipy_is_missing(monkeypatch):
    from vbkernels.benchmark import colormap as cmap_section

    def no_scipy():
        raise ImportError("No module named 'scipy'")

    monkeypatch.setattr(cmap_section, "_kdtree_decode", no_scipy)
    section = cmap_section.run(1, False, frame=(8, 12))
    assert section["status"] == "ok" and all(r["ckdtree"] is None for r in section["rows"])
    text = "\n".join(cmap_section.markdown(section))
    assert "No cKDTree baseline: scipy is not installed" in text and "Target:" not in text
