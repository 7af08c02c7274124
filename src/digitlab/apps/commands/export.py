"""``digitlab export``: a checkpoint -> one self-contained ONNX file, verified against PyTorch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitlab.core.resolve import DEFAULT_MODEL_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    from digitlab.training.export import DEFAULT_OPSET, EXPORTERS

    p = sub.add_parser(
        "export",
        help="export a model to ONNX (optionally int8), verified on the MNIST test set",
        description=(
            "Export a checkpoint to one self-contained .onnx file: input 'image' (N,1,28,28) "
            "float32 in [0,1] with ink=1 (normalisation is inside the model), output 'logits' "
            "(N,10), metadata embedded. The export is checked with onnx.checker and ONNX "
            "Runtime must match PyTorch on all 10,000 MNIST test images."
        ),
    )
    p.add_argument("model", help="checkpoint .pt path, or 'default' for the bundled model")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (onnx)")
    p.add_argument(
        "--out",
        type=Path,
        help="output .onnx file (default: <checkpoint name>.onnx, or .int8.onnx, here)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="write an int8 model (static quantisation calibrated on training images)",
    )
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)"
    )
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="auto",
        help="torch exporter: dynamo (default when onnxscript is installed) or torchscript",
    )
    p.add_argument(
        "--data-dir", type=Path, help="MNIST folder for verification (else $DIGITLAB_DATA)"
    )
    p.add_argument(
        "--download", action="store_true", help="download MNIST for verification if not found"
    )
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the parity check against PyTorch on the test set",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _default_out(model: str, quantize: str | None) -> Path:
    """``<checkpoint stem>[.int8].onnx`` in the current folder."""
    stem = "digitlab-default" if model in DEFAULT_MODEL_NAMES else Path(model).stem
    return Path(f"{stem}.int8.onnx" if quantize else f"{stem}.onnx")


def _print_report(result) -> None:
    """Human-readable export report."""
    print(
        f"exported {result.model_name} ({result.parameters:,} parameters) from "
        f"{result.metadata.get('source_checkpoint')}"
    )
    print(
        f"  -> {result.path} ({result.size / 1024:.1f} KiB, one file, opset {result.opset}, "
        f"{result.exporter} exporter)"
    )
    print("  onnx.checker: ok")
    p = result.parity
    if p is not None:
        verdict = "ok" if p.ok else "FAILED"
        print(f"  parity ONNX Runtime vs PyTorch on the {p.images:,} MNIST test images: {verdict}")
        print(f"    identical argmax      {p.argmax_equal:,} / {p.images:,}")
        print(f"    max |prob difference| {p.max_prob_diff:.2e} (limit {p.tolerance:.0e})")
        print(f"    max |logit difference| {p.max_logit_diff:.2e}")
        print(f"    test accuracy         onnx {p.onnx_accuracy:.2%}, torch {p.torch_accuracy:.2%}")
    else:
        print(f"  parity check on the MNIST test set SKIPPED: {result.verify_skipped}")
    q = result.quantization
    if q is not None:
        print(f"  int8 quantisation, calibrated on {q.calibration}:")
        header = f"    {'model':<6} {'test acc':>9} {'size KiB':>9}"
        if q.float_speed and q.int8_speed:
            header += f" {'batch-256 img/s':>16} {'1-image p50 ms':>15}"
        print(header)
        for label, acc, size, speed in (
            ("float", q.float_accuracy, q.float_size, q.float_speed),
            ("int8", q.int8_accuracy, q.int8_size, q.int8_speed),
        ):
            row = f"    {label:<6} {acc:>9.2%} {size / 1024:>9.1f}"
            if speed:
                row += f" {speed.batch_images_per_s:>16,.0f} {speed.single_p50_ms:>15.3f}"
            print(row)
        print(f"    int8 agrees with float on {q.agreement:.2%} of the test images")
        print("    (speeds are a quick indication; benchmarks/inference.py measures properly)")


def run(args: argparse.Namespace) -> int:
    """Export, verify, print the report."""
    from digitlab.training.export import export_onnx

    out = args.out or _default_out(args.model, args.quantize)
    result = export_onnx(
        args.model,
        out,
        opset=args.opset,
        exporter=args.exporter,
        quantize=args.quantize,
        verify=args.verify,
        data_dir=args.data_dir,
        download=args.download,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _print_report(result)
    return 0
