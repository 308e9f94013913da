"""Canonize timm CNNs (random weights, randomized batch-norm statistics, float64) and print, measured
by running model and twin: merges, batch-norm calls before -> after, conv/linear calls outside any
module before -> after, the relative logit difference, and whether the report says canonized.

Not a test (a few minutes on 2 CPU cores for the panel of tests/canonize/test_timm_panel.py):

    .venv/bin/python benchmarks/canonize_timm.py                   # the test panel, at 128 px
    .venv/bin/python benchmarks/canonize_timm.py --size 224 repvgg_a0 nf_resnet50
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import timm  # noqa: E402
import torch  # noqa: E402

from tests.canonize.helpers import make_input, randomize_batch_norms  # noqa: E402
from tests.canonize.test_timm_panel import NAMES  # noqa: E402
from xaiopt.canonize import canonize  # noqa: E402
from xaiopt.canonize.census import census  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("names", nargs="*")
parser.add_argument("--size", type=int, default=128)
args = parser.parse_args()
warnings.simplefilter("ignore")
print("| architecture | merges | batch norms computed (model -> twin) | conv/linear outside a module (model -> twin) "
      "| max rel. logit diff | report.canonized | seconds |")
print("|---|---|---|---|---|---|---|")
for name in args.names or NAMES:
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        model = randomize_batch_norms(timm.create_model(name, pretrained=False).double().eval())
        x = make_input((2, 3, max(args.size, 75), max(args.size, 75)))
        before = census(model, x)
        twin, report = canonize(model, x)
        after = census(twin, x)
    except Exception as error:  # a crash is a finding
        print(f"| {name} | CRASH {type(error).__name__}: {str(error)[:80]} | | | | | |")
        continue
    print(f"| {name} | {len(report.merges)} | {len(before.batch_norms)} -> {len(after.batch_norms)} | "
          f"{len(before.unhooked)} -> {len(after.unhooked)} | {report.max_rel_diff:.1e} | {report.canonized} | "
          f"{time.perf_counter() - start:.1f} |", flush=True)
