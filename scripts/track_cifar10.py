"""Issue 13 "done when": a small CNN trained 5 epochs on the full CIFAR-10 training set with a FrequencyTracker,
then ``freqlens analyze --track RUN --html`` on the trained weights (docs/analyze.md, "Tracked CIFAR-10 run").

Usage:

    python scripts/track_cifar10.py --data DIR --out runs/track-cifar10     # DIR holds cifar-10-python.tar.gz

Writes ``OUT/track`` (the tracker run), ``OUT/weights.pt`` (state dict), ``OUT/analyze`` (the report, with
``report.html``) and ``OUT/summary.json`` (times, test accuracy, records, CBN ranks per record). The model
factory :func:`build` is what ``freqlens analyze --model scripts/track_cifar10.py:build`` loads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from freqlens.datasets import load_cifar10
from freqlens.report import FrequencyTracker
from freqlens.report.tracker import load_run


def build() -> nn.Module:
    """The tracked CNN: three zero-padded 3x3 convs with BatchNorm, two max-pools, global average pool, linear
    head (about 60k parameters); takes CIFAR-10 images in [0, 1] as ``freqlens analyze --data cifar10:`` reads
    them."""
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2),
        *block(32, 64), nn.MaxPool2d(2),
        *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode (restores the mode it found)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    model.train(was)
    return hits / len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FREQLENS_DATA"), help="folder with cifar-10-python.tar.gz")
    p.add_argument("--out", default="runs/track-cifar10")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--records", type=int, default=30, help="target number of tracker records after step 0")
    p.add_argument("--probe", type=int, default=128, help="test images in the tracker's probe")
    p.add_argument("--train-images", type=int, default=None, help="first N training images (default: all 50000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data DIR is required (or set FREQLENS_DATA)")
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    track = out / "track"
    if (track / "tracker.json").exists():
        p.error(f"--out {out} already holds a tracker run: use a new folder (a fresh training would not match it)")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    x_train, y_train = load_cifar10(args.data, "train")
    x_test, y_test = load_cifar10(args.data, "test")
    if args.train_images is not None:  # smoke runs only; the documented run uses the full set
        x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
    load_s = time.perf_counter() - t0
    print(f"[data] {len(x_train)} train / {len(x_test)} test images in {load_s:.1f} s", flush=True)

    torch.manual_seed(args.seed)
    model = build()
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    every = max(1, total_steps // args.records)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    shuffle = torch.Generator().manual_seed(args.seed)
    train_s = track_s = 0.0
    t_fit, cpu_fit, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    t = time.perf_counter()
    tracker = FrequencyTracker(model, probe=x_test[: args.probe], every=every, out=track)
    track_s += time.perf_counter() - t
    with tracker:
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=shuffle)
            t_epoch = time.perf_counter()
            for i in range(0, len(x_train), args.batch_size):
                t = time.perf_counter()
                idx = order[i : i + args.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                flip = torch.rand(len(xb), generator=shuffle) < 0.5  # horizontal flips, the only augmentation
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                t2 = time.perf_counter()
                train_s += t2 - t
                tracker.step(loss=loss)
                track_s += time.perf_counter() - t2
            print(
                f"[epoch {epoch + 1}/{args.epochs}] loss {loss.item():.3f} in {time.perf_counter() - t_epoch:.0f} s "
                f"({len(tracker.records)} records)",
                flush=True,
            )
    fit_s, fit_cpu_s = time.perf_counter() - t_fit, time.process_time() - cpu_fit
    acc = accuracy(model, x_test, y_test)
    weights = out / "weights.pt"
    torch.save(model.state_dict(), weights)
    doc, _ = load_run(track)
    print(
        f"[fit] {fit_s:.0f} s wall ({fit_cpu_s:.0f} s CPU): training {train_s:.0f} s, tracking {track_s:.0f} s; "
        f"test accuracy {acc:.4f}"
    )

    script = Path(__file__).resolve()
    cmd = [sys.executable, "-m", "freqlens", "analyze", "--model", f"{script}:build", "--weights", str(weights),
           "--data", f"cifar10:{Path(args.data).resolve()}", "--track", str(track), "--html",
           "--out", str(out / "analyze"), "--no-progress"]  # fmt: skip
    print("[analyze]", shlex.join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    analyze_s = time.perf_counter() - t
    summary = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "steps": total_steps,
        "every": every,
        "records": len(doc["records"]),
        "load_s": load_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "train_s": train_s,
        "track_s": track_s,
        "analyze_wall_s": analyze_s,
        "test_accuracy": acc,
        "cbn_ranks": [[r["step"], r["weight_cbn_rank"], r["activation_cbn_rank"]] for r in doc["records"]],
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "report": str(out / "analyze" / "report.html"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[done] analyze {analyze_s:.0f} s wall; report {summary['report']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
