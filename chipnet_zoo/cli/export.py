"""``export``: a deployable slim model (ONNX, TorchScript or torch.export .pt2) from a run or a registry key.

    chipnet-zoo export --from runs/finetune-resnet8-mnist5k-flops-0.25 --format onnx --out r8.onnx
    chipnet-zoo export --from resnet8/mnist5k/flops-0.25 --format pt2 --out r8.pt2

Writes OUT, <stem>.mask.safetensors and <stem>.card.json beside it (atomically; existing files are refused
without --overwrite). The file is loaded back in its runtime and checked against the torch model first.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    text = "export a run's or registry entry's slim model to ONNX, TorchScript or .pt2"
    p = subparsers.add_parser("export", help=text, description=text,
                              epilog="examples:\n" + __doc__.split("\n\n", 1)[1].split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, metavar="RUN_OR_KEY",
                   help="a finished prune/finetune run folder, or a registry key arch/dataset/kind-value")
    p.add_argument("--format", required=True, metavar="onnx|torchscript|pt2",
                   help="onnx (run with onnxruntime), torchscript (torch.jit) or pt2 (torch.export)")
    p.add_argument("--out", required=True, metavar="PATH", help="the model file (e.g. model.onnx)")
    p.add_argument("--registry", help="registry of the key: a folder or hf://<owner>/<repo>[@<revision>] "
                                      "(default: $CHIPNET_ZOO_REGISTRY or the user cache, then the built-in zoo)")
    p.add_argument("--allow-untrained", action="store_true",
                   help="a registry entry without weights: export the slim architecture with random weights "
                        "(latency / integration checks only; the card says trained: false)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    p.add_argument("--onnx-exporter", metavar="dynamo|legacy", default="dynamo",
                   help="torch.onnx.export(dynamo=True) (default) or the legacy TorchScript-based exporter")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-verify", action="store_true",
                   help="skip loading the file back and comparing its outputs with the torch model's")
    p.add_argument("--json", action="store_true", help="print the card as JSON on stdout")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from ..export import export_from

    result = export_from(args.source, format=args.format, out=args.out, registry=args.registry,
                         allow_untrained=args.allow_untrained, opset=args.opset, exporter=args.onnx_exporter,
                         overwrite=args.overwrite, verify=not args.no_verify)
    card = result.card
    check = card["check"]
    checked = (f"checked with {check['runtime']}: max |diff| {check['max_abs_diff']:.2e} on batches "
               f"{check['batch_sizes']}" if check["verified"] else "not checked (--no-verify)")
    trained = "" if card["trained"] else " [UNTRAINED: random weights]"
    print(f"exported {card['arch']} ({card['budget']}, {card['params']:,} params){trained} as {card['format']} "
          f"to {result.path}; {checked}; mask {result.mask_path.name}, card {result.card_path.name}",
          file=sys.stderr)
    print(json.dumps(card, indent=1, sort_keys=True) if args.json else result.path)
    return 0
