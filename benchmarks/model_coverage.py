"""Coverage table: which torchvision and timm CNNs chipnet-zoo prunes exactly, and why not the others.

Every model runs in its own (forked) process, one thread, under a time limit, so a hang is recorded
(status ``timeout``) instead of stopping the table. For each: untrained weights, random batch-norm statistics, ``ChipNetPruner`` at ``flops:0.5``
(its construction is the *set-up time*: channel graph, probe check, gates). For a supported model, a
random-score mask at the same budget is then checked:

* the ratio is <= the target, and no group's next unit (``granularity`` channels) would still fit;
* the cost model's params and MACs equal the slimmed model's (counted by hooks);
* masked == slimmed: max |difference| of the outputs on a fresh batch (<= 1e-4 relative; in float64 where
  float32 rounding alone exceeds that).

Results go to ``benchmarks/results/coverage.json`` (resumable: done models are skipped) and the table
to ``docs/coverage.md``::

    OMP_NUM_THREADS=1 python benchmarks/model_coverage.py --models all --size 96 --limit 300
    python benchmarks/model_coverage.py --render-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's chipnet_zoo, also when another one is installed
RESULTS = ROOT / "benchmarks" / "results" / "coverage.json"
TABLE = ROOT / "docs" / "coverage.md"
TARGET = 0.5
TOLERANCE = 1e-4

#: timm CNNs by family (``timm/<name>``): a broad sample of what users pick, refused families included.
TIMM_FAMILIES: dict[str, list[str]] = {
    "ResNet": ["resnet10t", "resnet18", "resnet18d", "resnet26", "resnet26d", "resnet26t", "resnet34",
               "resnet50", "resnet50d", "wide_resnet50_2", "seresnet18", "resnetrs50", "resnet50_gn",
        "resnet101", "resnet152", "resnet50c", "resnet50s", "resnet101d", "resnet34d", "seresnet50", "ecaresnet50d", "resnetblur50",
        "resnet14t", "resnet32ts", "resnet33ts", "resnet51q", "resnet61q", "resnet152d", "resnet200d", "resnetv2_50", "resnetv2_50d", "resnetv2_101", "seresnet34", "seresnet101", "seresnet152d", "resnetrs101", "wide_resnet101_2", "gcresnet50t"],
    "ResNeXt": ["resnext26ts", "resnext50_32x4d", "seresnext26d_32x4d",
        "resnext101_32x4d", "resnext50d_32x4d", "seresnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d", "seresnext101_32x4d", "seresnext101d_32x8d", "seresnext26t_32x4d", "seresnext26ts"],
    "RegNet": ["regnetx_002", "regnetx_004", "regnety_002", "regnety_004", "regnetv_040",
        "regnetx_006", "regnetx_008", "regnetx_016", "regnetx_032", "regnety_006", "regnety_008", "regnety_016", "regnety_032", "regnetz_b16",
        "regnetx_040", "regnetx_064", "regnetx_080", "regnetx_120", "regnety_040", "regnety_064", "regnety_080", "regnety_120", "regnetv_064", "regnetz_c16", "regnetz_d8"],
    "EfficientNet": ["efficientnet_b0", "efficientnet_lite0", "efficientnetv2_rw_t", "tf_efficientnet_b0",
                     "tinynet_a",
        "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_lite1", "efficientnet_es", "efficientnet_em", "efficientnetv2_rw_s", "tf_efficientnet_lite0", "tf_efficientnetv2_b0", "tinynet_b", "tinynet_c", "tinynet_d", "tinynet_e",
        "efficientnet_b4", "efficientnet_b5", "efficientnet_lite2", "efficientnet_lite3", "efficientnet_lite4", "efficientnet_cc_b0_4e", "efficientnetv2_rw_m", "tf_efficientnet_b1", "tf_efficientnet_b2", "tf_efficientnet_b3", "tf_efficientnet_b4", "tf_efficientnet_es", "tf_efficientnet_em", "tf_efficientnetv2_b1", "tf_efficientnetv2_b2", "tf_efficientnetv2_b3", "tf_efficientnet_lite1", "tf_efficientnet_lite2"],
    "MobileNet": ["mobilenetv2_050", "mobilenetv2_100", "mobilenetv3_small_100", "mobilenetv3_large_100",
                  "mobilenetv4_conv_small", "lcnet_050", "mnasnet_100", "fbnetc_100", "spnasnet_100",
                  "hardcorenas_a", "semnasnet_100", "mixnet_s",
        "mobilenetv2_110d", "mobilenetv2_120d", "mobilenetv2_140", "mobilenetv3_large_075", "mobilenetv3_small_050", "mobilenetv3_rw", "tf_mobilenetv3_large_100", "mobilenetv4_conv_medium", "lcnet_075", "lcnet_100", "fbnetv3_b", "mnasnet_small", "mixnet_m", "semnasnet_075", "hardcorenas_b", "hardcorenas_c", "hardcorenas_d",
        "mobilenetv3_large_150d", "mobilenetv3_small_075", "tf_mobilenetv3_small_100", "tf_mobilenetv3_large_075", "tf_mobilenetv3_small_075", "tf_mobilenetv3_large_minimal_100", "mobilenetv4_conv_large", "mobilenetv4_conv_blur_medium", "mobilenetv2_035", "mobilenetv2_075", "fbnetv3_d", "fbnetv3_g", "lcnet_035", "lcnet_150", "mnasnet_050", "mnasnet_075", "mnasnet_140", "semnasnet_050", "semnasnet_140", "hardcorenas_e", "hardcorenas_f"],
    "GhostNet": ["ghostnet_100", "ghostnetv2_100",
        "ghostnetv3_100",
        "ghostnet_050", "ghostnet_130", "ghostnetv2_130", "ghostnetv2_160"],
    "RexNet": ["rexnet_100",
        "rexnetr_100", "rexnet_150"],
    "DenseNet": ["densenet121", "densenetblur121d",
        "densenet161", "densenet169", "densenet201",
        "densenet264d"],
    "DLA": ["dla34", "dla46_c",
        "dla60", "dla102", "dla60x", "dla46x_c",
        "dla60_res2net", "dla102x", "dla169", "dla60x_c", "dla102x2"],
    "CSP": ["cspresnet50", "cs3darknet_s",
        "cspdarknet53", "cspresnext50"],
    "HRNet": ["hrnet_w18_small",
        "hrnet_w18_small_v2", "hrnet_w18",
        "hrnet_w30", "hrnet_w32"],
    "VGG": ["vgg11_bn",
        "vgg13_bn", "vgg16_bn",
        "vgg11", "vgg19_bn"],
    "RepVGG": ["repvgg_a0", "mobileone_s0", "gernet_s",
        "repvgg_a1", "repvgg_b0", "mobileone_s1",
        "repvgg_b1", "repvgg_b1g4", "repvgg_b2", "repvgg_b3", "repvgg_a2", "mobileone_s2", "mobileone_s3", "gernet_l"],
    "ConvNeXt": ["convnext_atto",
        "convnext_femto", "convnext_pico"],
    "Other": ["selecsls42b", "darknet17", "ese_vovnet19b_dw", "inception_v3", "xception41", "dpn68",
              "res2net50_26w_4s", "nf_resnet26", "resnest14d", "skresnet18",
        "gernet_m", "selecsls60", "darknet21", "ese_vovnet39b",
        "selecsls42", "darknet53", "ese_vovnet39b_evos", "ese_vovnet57b"],
}


def timm_names() -> list[str]:
    return [f"timm/{n}" for names in TIMM_FAMILIES.values() for n in names]


#: The largest torchvision models run last (minutes each on one thread).
HEAVY = ("tv/regnet_y_32gf", "tv/vit_l_16", "tv/vit_l_32", "tv/vit_h_14", "tv/regnet_y_128gf")


def tv_names() -> list[str]:
    import chipnet_zoo as cz

    names = cz.list_models("tv/*")
    return [n for n in names if n not in HEAVY] + [n for n in HEAVY if n in names]


def family_of(name: str) -> str:
    if name.startswith("tv/"):
        return "torchvision"
    short = name.split("/", 1)[1]
    return next((f for f, names in TIMM_FAMILIES.items() if short in names), "timm")


# --- one model, in a worker process ----------------------------------------------------------------
def check_model(name: str, size: int) -> dict:
    """Build, set up and check one model; a JSON-able record."""
    import torch

    import chipnet_zoo as cz
    from chipnet_zoo.cost import measure_params_macs
    from chipnet_zoo.errors import UnsupportedModelError
    from chipnet_zoo.gates import FixedGates, attach_gates
    from chipnet_zoo.slim import slim_model
    from chipnet_zoo.threshold import _group_blocks, threshold_scores
    from chipnet_zoo.verify import randomize_batchnorm

    torch.manual_seed(0)
    model = cz.create_model(name, num_classes=10).eval()
    randomize_batchnorm(model, 0)
    record: dict = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    x = torch.randn(1, 3, size, size)
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # noqa: BLE001 - some models need their own input size (ViT: 224)
        x = torch.randn(1, *model.default_input_size)
    record["input"] = list(x.shape[2:])
    start = time.perf_counter()
    try:
        pruner = cz.ChipNetPruner(model, f"flops:{TARGET}", example_input=x)
    except UnsupportedModelError as exc:
        record.update(status="refused", setup_s=time.perf_counter() - start, error=type(exc).__name__,
                      layer=getattr(exc, "layer", ""), reason=getattr(exc, "reason", str(exc)))
        return record
    record["setup_s"] = time.perf_counter() - start
    graph, cost = pruner.graph, pruner.cost
    pruner.remove()
    scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    keep = threshold_scores(scores, cost, f"flops:{TARGET}")
    record["threshold_s"] = time.perf_counter() - start
    ratio = cost.hard_ratios(keep)["flops"]
    tight = True  # no group's next unit still fits
    for group in graph.groups:
        blocks = _group_blocks(scores.double(), group, 1)
        kept = sum(bool(keep[b].all()) for b in blocks)
        if kept < len(blocks):
            trial = keep.clone()
            trial[blocks[kept]] = True
            tight &= cost.hard_ratios(trial)["flops"] > TARGET
    slim = slim_model(model, graph, keep, x)
    params, macs = measure_params_macs(slim, x)
    counts = cost.hard_counts(keep)
    masked = attach_gates(model, FixedGates(graph, keep), graph).eval()
    batch = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, actual = masked(batch), slim.eval()(batch)
    diff = float((expected - actual).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    diff64 = None
    if diff > TOLERANCE * scale:  # float32 rounding alone, or a real difference: float64 decides
        masked64, slim64 = masked.double(), slim.double()
        with torch.no_grad():
            diff64 = float((masked64(batch.double()) - slim64(batch.double())).abs().max())
    record.update(
        status="supported", ratio=ratio, tight=tight, granularity=max(g.granularity for g in graph.groups),
        groups=len(graph.groups), cost_params=counts["params"] == params, cost_macs=counts["flops"] == macs,
        max_abs_diff=diff, max_abs_diff_f64=diff64, output_scale=scale,
        exact=(diff <= TOLERANCE * scale or (diff64 is not None and diff64 <= TOLERANCE * scale))
        and counts["params"] == params
        and counts["flops"] == macs and ratio <= TARGET and tight)
    return record


# --- the driver --------------------------------------------------------------------------------------
def _child(conn, name: str, size: int) -> None:
    try:
        conn.send(check_model(name, size))
    except BaseException as exc:  # noqa: BLE001 - reported as a crash of this model
        conn.send({"status": "crashed", "reason": f"{type(exc).__name__}: {exc}"[:300]})
    finally:
        conn.close()


def run_one(name: str, size: int, limit: float) -> dict:
    """``check_model`` in a forked child (torch and timm already imported) under a time limit."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    start = time.perf_counter()
    proc = ctx.Process(target=_child, args=(child, name, size), daemon=True)
    proc.start()
    child.close()
    record = parent.recv() if parent.poll(limit) else None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if record is None:
        if time.perf_counter() - start >= limit:
            return {"status": "timeout", "reason": f"no answer within the time limit of {limit:.0f} s",
                    "setup_s": limit}
        return {"status": "crashed", "reason": f"the process ended with exit code {proc.exitcode}"}
    record["wall_s"] = time.perf_counter() - start
    return record


def render(results: dict[str, dict], size: int) -> str:
    def fmt(v, spec=".2f"):
        return "" if v is None else format(v, spec)

    tv = {k: v for k, v in results.items() if k.startswith("tv/")}
    timm = {k: v for k, v in results.items() if k.startswith("timm/")}
    lines = ["# Coverage: which CNNs chipnet-zoo prunes exactly", "",
             "Generated by `benchmarks/model_coverage.py` (do not edit by hand). Every model: untrained weights, random "
             f"batch-norm statistics, a {size}×{size} input (the model's own size where it needs one), one CPU "
             "thread, its own process with a time limit. *Set-up* is `ChipNetPruner(...)` at `flops:0.5`: the "
             "channel graph, the masked == slimmed probe and the gates. For supported models a random-score mask "
             "at `flops:0.5` is then checked: the FLOPs ratio is ≤ 0.5 and no group's next unit would still fit "
             "(*tight*; *unit* is the largest granularity: channels kept or removed together across the conv "
             "groups of a grouped convolution), the cost model's parameters and MACs equal the slimmed model's, "
             "and the masked and slimmed outputs agree (max |Δ| ≤ 1e-4 relative to max(1, |output|); where float32 "
             "rounding alone exceeds that on deep nets with large activations, float64 copies decide and both "
             "differences are shown). "
             "Refused models name the layer and the reason (`chipnet_zoo.errors.UnsupportedLayerError`).", ""]
    if timm:
        lines += ["## timm families", "",
                  "The sample: for each family below, its common variants; *Other* adds SelecSLS, "
                  "DarkNet, VoVNet, Inception, Xception and families known to be hard (dual-path, Res2Net, "
                  "selective-kernel, split-attention, NF and EvoNorm nets). Every model tried is listed.", "",
                  "| family | supported exactly | refused (or over the time limit) |", "|---|---:|---|"]
        for family in TIMM_FAMILIES:
            members = {k: v for k, v in timm.items() if family_of(k) == family}
            if not members:
                continue
            ok = sum(v.get("status") == "supported" and bool(v.get("exact")) for v in members.values())
            others = ", ".join(f"`{k.split('/', 1)[1]}`" for k, v in sorted(members.items())
                               if not (v.get("status") == "supported" and v.get("exact")))
            lines.append(f"| {family} | {ok} of {len(members)} | {others} |")
        lines.append("")
    for title, part in (("timm", timm), ("torchvision", tv)):
        if not part:
            continue
        ok = [k for k, v in part.items() if v.get("status") == "supported" and v.get("exact")]
        refused = [k for k, v in part.items() if v.get("status") == "refused"]
        timeout = [k for k, v in part.items() if v.get("status") == "timeout"]
        other = len(part) - len(ok) - len(refused) - len(timeout)
        lines += [f"## {title}: {len(ok)} of {len(part)} supported exactly ({100 * len(ok) / len(part):.0f} %), "
                  f"{len(refused)} refused" + (f", {len(timeout)} over the time limit" if timeout else "")
                  + (f", {other} other (crashed or inexact)" if other else ""), "",
                  "| model | family | params (M) | input | status | set-up (s) | FLOPs ratio | tight | unit | "
                  "cost = slim (params, MACs) | max abs diff | layer: reason |",
                  "|---|---|---:|---|---|---:|---:|---|---:|---|---:|---|"]
        for name in sorted(part):
            r = part[name]
            status = r.get("status", "?")
            if status == "supported":
                status = "supported" if r.get("exact") else "**inexact**"
                cells = [fmt(r.get("ratio"), ".4f"), "yes" if r.get("tight") else "no", str(r.get("granularity", "")),
                         f"{'yes' if r.get('cost_params') else 'no'}, {'yes' if r.get('cost_macs') else 'no'}",
                         fmt(r.get("max_abs_diff"), ".1e") + (f" (float64: {r['max_abs_diff_f64']:.1e})"
                                                              if r.get("max_abs_diff_f64") is not None else ""), ""]
            else:
                reason = r.get("reason", "").replace("|", "\\|").replace("\n", " ")
                layer = f"`{r['layer']}`: " if r.get("layer") else ""
                cells = ["", "", "", "", "", f"{layer}{reason}"]
            inp = "×".join(str(v) for v in r.get("input", [])) or ""
            lines.append(f"| `{name}` | {family_of(name)} | {fmt(r.get('params_m'), '.1f')} | {inp} | {status} | "
                         f"{fmt(r.get('setup_s'))} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Machine: {platform.machine()}, {platform.python_version()}; "
              "reproduce with `OMP_NUM_THREADS=1 python benchmarks/model_coverage.py --models all`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="all", help="all | tv | timm | comma-separated names")
    ap.add_argument("--size", type=int, default=96, help="input height and width")
    ap.add_argument("--limit", type=float, default=300, help="seconds per model (a hang becomes a refusal)")
    ap.add_argument("--redo", action="store_true", help="re-run models already in the results")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(check_model(args.worker, args.size)), flush=True)
        return 0
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.render_only:
        os.environ["HF_HUB_OFFLINE"] = "1"  # untrained models only: never touch the network
        import timm  # noqa: F401 - imported once here, inherited by every forked child
        import torch

        import chipnet_zoo.pruner  # noqa: F401
        import chipnet_zoo.slim  # noqa: F401

        torch.set_num_threads(1)
        names = {"all": None, "tv": tv_names, "timm": timm_names}.get(args.models, False)
        if names is None:
            todo = timm_names() + tv_names()
        elif names is False:
            todo = args.models.split(",")
        else:
            todo = names()
        for name in todo:
            if name in results and not args.redo:
                continue
            results[name] = run_one(name, args.size, args.limit)
            r = results[name]
            print(f"{name}: {r['status']} {r.get('setup_s', 0):.1f}s {r.get('reason', '')[:120]}", flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    TABLE.write_text(render(results, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
