"""Fail fast if a pip install plan (pip install --dry-run --report) would pull CUDA packages."""

import json
import sys

CUDA_PREFIXES = ("nvidia-", "triton", "cuda-", "cupy")

plan = json.load(open(sys.argv[1]))
names = [item["metadata"]["name"].lower() for item in plan.get("install", [])]
cuda = [n for n in names if n.startswith(CUDA_PREFIXES)]
torch = [item["metadata"]["version"] for item in plan.get("install", []) if item["metadata"]["name"].lower() == "torch"]
if cuda:
    sys.exit(f"refusing to install CUDA packages: {', '.join(sorted(cuda))} (torch would be {torch or 'unchanged'})")
print(f"install plan: {len(names)} packages, no CUDA packages")
