"""What seg_recipe.py and ssd_recipe.py share: their command line, the order in which ostrov's
data loader visits the training set, and the JSON line each evaluation reports."""
import argparse
import json

import torch


def parser(doc, *, width, width_help, lr, warmup, total):
    """(parser, its subparsers, the `train` parser): `pack` and `train` with the options both
    recipes take; the defaults are the recipe's config."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="write a compact copy of the scenes")
    pk.add_argument("--scenes", required=True, help="folder with train/ and val/ scene sets")
    pk.add_argument("--output", required=True)
    tr = sub.add_parser("train", help="train and evaluate the recipe")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenes", help="folder with train/ and val/ scene sets")
    src.add_argument("--packed", help="a file written by `pack`")
    tr.add_argument("--width", type=int, default=width, help=width_help)
    tr.add_argument("--batch", type=int, default=8)
    tr.add_argument("--lr", type=float, default=lr)
    tr.add_argument("--warmup", type=int, default=warmup)
    tr.add_argument("--total", type=int, default=total, help="steps of the cosine schedule")
    tr.add_argument("--stop", type=int, default=0, help="stop after this many steps (0: --total)")
    tr.add_argument("--eval-every", type=int, default=0)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--wall", type=float, default=1e9, help="stop after this many seconds")
    tr.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    tr.add_argument("--log", help="append each evaluation's JSON line here")
    tr.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: the training forward passes under torch.autocast "
                         "(train.precision); evaluations stay in float32")
    return p, sub, tr


def epoch_batches(n, batch, device):
    """Index batches without end: each epoch a fresh permutation of range(n), its last partial
    batch dropped (ostrov's DataLoader with shuffle and drop_last)."""
    while True:
        order = torch.randperm(n, device=device)
        for start in range(0, n - batch + 1, batch):
            yield order[start:start + batch]


def emit(record, log=None):
    """Prints `record` as one JSON line and appends it to the file `log`, if given."""
    line = json.dumps(record)
    print(line, flush=True)
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


def autocast(args, device):
    """torch.autocast to bfloat16 when --precision bf16 (ostrov's AutocastGuard), else a no-op."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                          enabled=args.precision == "bf16")
