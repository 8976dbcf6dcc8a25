"""The Ilyas et al. ablation on real Fashion-MNIST: which factor keeps D_R from being more robust than
D, and D_det from generalising? Every variant is one `robustlens experiment` on the same 2,000 training
images (seed 0), written to docs/features/ablation-VARIANT.json; every dataset one `robustlens
build-dataset`, every extra robust model one `robustlens train`.

    python tools/ablation.py list              # every step and its command
    python tools/ablation.py run b             # D_R, D_det, then the variants (each waits for its datasets)
    python tools/ablation.py run a             # beside it: the robust models and the other datasets
    python tools/ablation.py table [EPS ...]   # the README table across the variants (at those ε)

Everything resumes: a finished build, model or row is skipped (builds and experiments resume
themselves; a row with the same settings and dataset found in another variant's JSON is copied
instead of retrained, which gives the same numbers, since training is seeded). Heavy work runs
under `nice -n 10` with one torch thread. Data goes to $ABLATION_DATA (default
/work/data/ablation, outside the repository).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "features"
DATA = Path(os.environ.get("ABLATION_DATA", "/work/data/ablation"))
PYTHON = os.environ.get("ABLATION_PYTHON", sys.executable)
COUNT, SEED = 2000, 0
CONFIRM_COUNT = 10_000  # the winning variant, once more on this many training images
INVERSION = "--steps 100 --step-size 1 --schedule cosine"
# robust accuracy at the zoo robust model's ε (1.5) and at 2.0, where D may collapse on 2,000
# images; 20-step PGD on 300 test images (±3 points at 30 %) and on 300 of 1,000 held-out training
# images (the CPU budget: the robust evaluation is most of a row's cost)
EVAL = "--eval-eps 1.5 2.0 --eval-images 300 --holdout 1000"
SMALL_EPS = EVAL.replace("1.5 2.0", "1.0 1.25")
ROBUST_MODELS = {  # the two extra robust models: 2 epochs instead of the zoo model's 8 (CPU budget)
    "l2-robust-eps0.5": "--mode adversarial --norm l2 --eps 0.5 --steps 5 --epochs 2",
    "l2-robust-eps1.0": "--mode adversarial --norm l2 --eps 1.0 --steps 5 --epochs 2",
}
BRITTLE_MODELS = {  # a standard residual net on all 60,000 images, to build D_det from;
    "standard-resnet": "--mode standard --arch fmnist-resnet --epochs 2",  # 2: the CPU budget
}


def model_file(name: str) -> Path:
    return DATA / "models" / f"{name}.pt"


@dataclass
class Step:
    name: str
    args: str
    queue: str
    out: Path                     # a dataset folder, model file or results JSON
    needs: list[Path] = field(default_factory=list)

    def command(self) -> list[str]:
        return ["nice", "-n", "10", PYTHON, "-m", "robustlens", *shlex.split(self.args), "--threads", "1"]

    def done(self) -> bool:
        if self.out.suffix == ".pt":
            return self.out.exists()
        if self.out.suffix == ".json":  # every row there (a partial file: the experiment keeps its rows)
            if not self.out.exists() or not all(Step("", "", "", need).done() for need in self.needs):
                return False
            names = {"D"} | {json.loads((need / "manifest.json").read_text())["name"] for need in self.needs}
            return names <= {row["dataset"] for row in json.loads(self.out.read_text())["rows"]}
        manifest = self.out / "manifest.json"
        return manifest.exists() and bool(json.loads(manifest.read_text()).get("complete"))


def _build(folder: str, args: str, count: int = COUNT) -> Step:
    out = DATA / f"n{count}" / folder
    name = folder if count == COUNT else f"{folder}@{count}"
    return Step(f"build {name}", f"build-dataset {args} --count {count} --seed {SEED} --out {out}", "build", out)


BUILDS = [  # queue "b" builds what its first variants need; queue "a" the rest, beside it
    _build("D_R", f"--kind robust {INVERSION} --seeds other-class"),
    _build("D_det", "--kind det --eps 1.5 --pgd-steps 50"),
    _build("D_R-noise", f"--kind robust {INVERSION} --seeds noise"),
    _build("D_R-random", f"--kind robust {INVERSION} --seeds random"),
    _build("D_R-eps1.0", f"--kind robust {INVERSION} --seeds other-class --model {model_file('l2-robust-eps1.0')}"),
    _build("D_R-eps0.5", f"--kind robust {INVERSION} --seeds other-class --model {model_file('l2-robust-eps0.5')}"),
    _build("D_det-eps0.5", "--kind det --eps 0.5 --pgd-steps 100"),
    _build("D_rand", "--kind rand --eps 1.5 --pgd-steps 50"),
    _build("D_R-300steps", "--kind robust --steps 300 --step-size 1 --schedule cosine --seeds other-class"),
    # D_det from a more brittle standard model: the residual net (D at ε = 1.5: 3 % against 28 %)
    _build("D_det-resnet", f"--kind det --eps 1.5 --pgd-steps 50 --model {model_file('standard-resnet')}"),
    # the winner (the residual net, D_R against D at ε = 1.0) confirmed on 10,000 images
    _build("D_R", f"--kind robust {INVERSION} --seeds other-class", count=CONFIRM_COUNT),
]
for step in BUILDS[:2]:
    step.queue = "b"
for step in BUILDS[2:]:
    step.queue = "a"
BUILT = {step.name.removeprefix("build "): step.out for step in BUILDS}
TRAINS = [Step(f"train {name}", f"train {args} --seed 0 --name fashion-mnist/{name} --out {model_file(name)}",
               "a", model_file(name)) for name, args in {**ROBUST_MODELS, **BRITTLE_MODELS}.items()]


def _variant(name: str, folders: list[str], arch: str = "fmnist-cnn", epochs: int = 10, evaluation: str = EVAL) -> Step:
    out = DOCS / f"ablation-{name}.json"
    data = " ".join(str(BUILT[f]) for f in folders)
    return Step(f"experiment {name}",
                f"experiment --data {data} --baseline --arch {arch} --epochs {epochs} {evaluation} --out {out}",
                "b", out, [BUILT[f] for f in folders])


VARIANTS = [
    _variant("base", ["D_R", "D_det"]),
    _variant("arch-resnet", ["D_R", "D_det"], arch="fmnist-resnet"),
    # the residual net's D already falls to 2 % at ε = 1.5 (held out): the same models at smaller ε
    _variant("arch-resnet-small-eps", ["D_R"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("seeds-noise", ["D_R-noise"]),
    _variant("det-eps0.5", ["D_det-eps0.5"]),
    # the residual net's gain with the paper's seeds (any other image) and with gray noise
    _variant("arch-resnet-seeds-random", ["D_R-random"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("arch-resnet-seeds-noise", ["D_R-noise"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("seeds-random", ["D_R-random"]),
    _variant("epochs-30", ["D_R", "D_det"], epochs=30),
    _variant("robust-eps1.0", ["D_R-eps1.0"]),
    _variant("rand", ["D_rand"]),
    _variant("arch-wide", ["D_R"], arch="fmnist-wide"),
    _variant("robust-eps0.5", ["D_R-eps0.5"]),
    _variant("inversion-300steps", ["D_R-300steps"]),
    # the robust model's ε with the residual net, where D_R does make a difference
    _variant("arch-resnet-robust-eps1.0", ["D_R-eps1.0"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("arch-resnet-robust-eps0.5", ["D_R-eps0.5"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("det-resnet", ["D_det-resnet"], arch="fmnist-resnet", evaluation=SMALL_EPS),
    _variant("arch-resnet-n10000", [f"D_R@{CONFIRM_COUNT}"], arch="fmnist-resnet", evaluation=SMALL_EPS),
]
VARIANTS[[s.name for s in VARIANTS].index("experiment arch-resnet-seeds-noise")].queue = "a"  # once a's builds ended
# queue "a": the cheap builds first (the seeds, the weaker D_det), then the robust models' chain
STEPS = (BUILDS[:2] + VARIANTS + BUILDS[2:3] + BUILDS[6:7] + BUILDS[3:4] + TRAINS[1:2] + BUILDS[4:5] + BUILDS[7:8]
         + TRAINS[:1] + BUILDS[5:6] + BUILDS[8:9] + TRAINS[2:] + BUILDS[9:])


def _share_rows(step: Step) -> None:
    """Copy into the variant's JSON the rows that another variant computed with the same settings
    (same training, evaluation and dataset identity), so a shared row D is trained once."""
    if not step.out.exists():
        return
    results = json.loads(step.out.read_text())
    have = {(r["dataset"], r.get("identity")) for r in results["rows"]}
    for other in DOCS.glob("ablation-*.json"):
        if other == step.out:
            continue
        theirs = json.loads(other.read_text())
        if all(theirs.get(k) == results.get(k) for k in ("format", "settings", "test", "validation")):
            for row in theirs["rows"]:
                if (row["dataset"], row.get("identity")) not in have and row["dataset"] == "D":
                    results["rows"].insert(0, row)
                    have.add((row["dataset"], row.get("identity")))
    step.out.write_text(json.dumps(results, indent=2) + "\n")


def _ready(step: Step) -> bool:
    return all(Step("", "", "", need).done() for need in step.needs)


def run(queue: str) -> None:
    """Run the queue's steps in order, except that a step whose datasets are not built yet (by the
    other queue) lets the next ready one go first."""
    pending = [s for s in STEPS if s.queue == queue]
    while pending:
        step = next((s for s in pending if _ready(s)), None)
        if step is None:
            time.sleep(30)
            continue
        pending.remove(step)
        if step.done():
            print(f"[done] {step.name}", flush=True)
            continue
        _seed_from_siblings(step)
        print(f"[run] {step.name}: {shlex.join(step.command())}", flush=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        code = subprocess.call(step.command(), cwd=ROOT, env=env)
        if code:
            print(f"[failed {code}] {step.name}", flush=True)


def _seed_from_siblings(step: Step) -> None:
    """Before a variant's first run, start its JSON from a sibling with the same settings, header
    only, so that _share_rows can give it their row D; the experiment keeps rows it recognises."""
    if not step.out.suffix == ".json" or step.out.exists():
        return
    # the settings a run would write are only known once it runs; a sibling with the same EVAL and
    # training flags has them, so the header is taken from the first variant with the same arguments
    mine = _training_flags(step.args)
    for other in VARIANTS:
        if other is not step and other.out.exists() and _training_flags(other.args) == mine:
            header = json.loads(other.out.read_text())
            header["rows"] = []
            step.out.write_text(json.dumps(header, indent=2) + "\n")
            _share_rows(step)
            return


def _training_flags(args: str) -> str:
    words = shlex.split(args)
    if "--data" in words:
        start = words.index("--data") + 1
        while start < len(words) and not words[start].startswith("--"):
            del words[start]
    if "--out" in words:
        del words[words.index("--out"):words.index("--out") + 2]
    return " ".join(words)


def _cell(accuracies: dict, eps: str) -> str:
    return f"{100 * accuracies[eps]:.1f}" if eps in accuracies else "–"


def table(only: list[str] | None = None) -> str:
    """One Markdown row per (variant, dataset): test-set and held-out accuracies in %, at every ε
    evaluated (or at ``only``)."""
    found = [(step, json.loads(step.out.read_text())) for step in VARIANTS if step.out.exists()]
    eps = sorted({e for _, r in found for e in map(str, map(float, r["settings"]["eval_eps"]))}, key=float)
    eps = [e for e in eps if only is None or float(e) in map(float, only)]
    header = (["variant", "train on", "arch", "epochs", "clean"] + [f"ε={e}" for e in eps]
              + ["held-out clean"] + [f"held-out ε={e}" for e in eps])
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
    for step, results in found:
        for row in results["rows"]:
            held = row.get("validation")
            cells = [step.out.stem.removeprefix("ablation-"), row["dataset"], results["settings"]["arch"],
                     str(row["epochs"]), f"{100 * row['clean_accuracy']:.1f}"]
            cells += [_cell(row["robust_accuracy"], e) for e in eps]
            cells += [f"{100 * held['clean_accuracy']:.1f}" if held else "–"]
            cells += [_cell(held["robust_accuracy"] if held else {}, e) for e in eps]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["list"]:
        for step in STEPS:
            print(f"[{step.queue}] {step.name}\n    robustlens {step.args}")
        return 0
    if argv[:1] == ["run"] and len(argv) == 2 and argv[1] in ("a", "b"):
        run(argv[1])
        return 0
    if argv[:1] == ["table"]:
        print(table(argv[1:] or None))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
