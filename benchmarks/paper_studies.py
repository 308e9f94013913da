"""Seconds per trial of the paper's studies (studies/paper_*.yaml) on this machine.

Each study file as shipped (224 px, its metrics and parameters, its sampler and baselines), except:
random weights (batch-norm statistics measured on noise, as tests/test_paper_studies.py does:
torchvision's identity batch norms leave a random EfficientNet-B0 with logits of 1e-15 and all-zero
explanations) and a generated ILSVRC-style folder (noise JPEGs, 300x260, one centred box) with
``--n-samples`` images over as many classes. Prints, per study, the benchmark build and the first
trial (its explainer, its seconds per part) and writes them as JSON with ``--out``.

Not a test. A trial's cost is linear in n_samples (every metric is per sample; on a CPU the
explanations run in chunks of 1-4 images at 224 px), so measure a few samples and scale:

    .venv/bin/python benchmarks/paper_studies.py --n-samples 2 --threads 1
    .venv/bin/python benchmarks/paper_studies.py --n-samples 4 --threads 1 paper_canonization_resnet18
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import optuna  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xaiopt  # noqa: E402
from tests.test_paper_studies import calibrate_batch_norms, write_tiny_imagenet  # noqa: E402
from xaiopt.config import config_to_dict, parse_config  # noqa: E402
from xaiopt.zoo.classes import imagenet_wnids  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("studies", nargs="*", help="study file stems (default: every studies/paper_*.yaml)")
parser.add_argument("--n-samples", type=int, default=2)
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--device", default="cpu")
parser.add_argument("--out", type=Path)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
optuna.logging.set_verbosity(optuna.logging.WARNING)

build = torchvision.models.get_model


def get_model(name, **kwargs):
    model = build(name, **kwargs)
    if kwargs.get("weights") is None:
        calibrate_batch_norms(model, size=64)
    return model


torchvision.models.get_model = get_model

def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


tmp = Path(tempfile.mkdtemp(prefix="paper-studies-"))
wnids = imagenet_wnids()
data = write_tiny_imagenet(tmp / "imagenet", [wnids[i * 997 % 1000] for i in range(args.n_samples)], size=(300, 260))
files = [ROOT / "studies" / f"{s}.yaml" for s in args.studies] or sorted((ROOT / "studies").glob("paper_*.yaml"))
machine = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "processor": _cpu_name(),
           "load_average": os.getloadavg(), "torch": torch.__version__, "n_samples": args.n_samples,
           "device": args.device}
print(json.dumps(machine))
rows = []
for file in files:
    raw = config_to_dict(xaiopt.load_config(file))
    raw["model"]["weights"] = None
    raw["data"].update(name=f"imagenet:{data}", n_samples=args.n_samples, n_classes=args.n_samples)
    cfg = parse_config(raw, source=file.name)
    storage = f"sqlite:///{tmp / (file.stem + '.db')}"
    start = time.perf_counter()
    xaiopt.create_study(cfg, storage=storage, artifact_dir=tmp / "art")
    created = time.perf_counter()
    loaded = xaiopt.optimize(cfg.name, storage=storage, n_trials=1, device=args.device)
    ran = time.perf_counter()
    trial = loaded.study.trials[0]
    row = {"study": file.stem, "model": cfg.model.name, "image_size": cfg.data.image_size, "state": trial.state.name,
           "create_s": round(created - start, 1), "trial_wall_s": round(ran - created, 1),
           "explainer": trial.user_attrs.get("explainer_text"), "seconds": trial.user_attrs.get("seconds"),
           "values": trial.values}
    row["trial_s_per_sample"] = round(row["seconds"]["total"] / args.n_samples, 1) if row["seconds"] else None
    rows.append(row)
    print(json.dumps(row), flush=True)
if args.out:
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
