"""Recall quality: recall@10 and MRR@10 per mode on answers only links lead to.

    .venv/bin/python ops/bench/quality.py [--seed 7] [--distractors 3000]
                                          [--questions 50] [--diagnose]

No server: the data set of ``recall_dataset.py`` (beside this script) (random distractors;
per question a cue, a bridge memory near it and answers with random vectors
linked to the bridge) is folded into a ``SpaceState`` with the default link
settings, once per layout of ``LAYOUTS`` (memories stored 1 s apart, so temporal
links join unrelated neighbours, or 10 min apart, beyond the temporal window),
and recalled with the API's default query parameters. It prints a markdown table
of recall@10 (share of the answers in the top 10) and MRR@10 (mean 1 / rank of a
question's first answer) without decay, and recall@10 with decay measured to the
last write, as a client recalling right after storing would see it;
``--diagnose`` adds why spreading ranks the answers where it does.
"""

from __future__ import annotations

import argparse
import time

from recall_dataset import LAYOUTS, MODES, build, diagnose, load, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--distractors", type=int, default=3000)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--diagnose", action="store_true", help="explain the spreading figures")
    args = parser.parse_args()

    rows = []
    notes = []
    diagnoses = []
    for layout, gap_s in LAYOUTS.items():
        start = time.perf_counter()
        ds = build(
            seed=args.seed, distractors=args.distractors, questions=args.questions, gap_s=gap_s
        )
        state = load(ds)
        folded = time.perf_counter() - start
        for mode in MODES:
            plain = measure(state, ds, mode)
            decayed = measure(state, ds, mode, now=ds.end)
            rows.append(
                f"| {layout} | {mode} | {plain.recall_at_k:.3f} | {plain.mrr:.3f} "
                f"| {decayed.recall_at_k:.3f} |"
            )
        span_h = (ds.end - ds.wal[0].timestamp.timestamp()) / 3600
        notes.append(
            f"- {layout}: {ds.memories} memories over {span_h:.1f} h, "
            f"{len(state.graph)} links; folded and indexed in {folded:.1f} s"
        )
        if args.diagnose:
            diagnoses.append(f"{layout}: {diagnose(state, ds)}")

    answers = len(ds.questions[0].answers)
    print(
        f"Recall quality: {args.distractors} random distractors (dim {ds.dim}) and "
        f"{args.questions} questions, each a cue, a bridge at cosine 0.9 from it and "
        f"{answers} answers with random vectors, explicitly linked to the bridge "
        f"(weight 0.9); default link settings and query parameters; seed {args.seed}.\n"
    )
    print("| layout | mode | recall@10 | MRR@10 | recall@10 with decay |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print("\n".join(notes))
    if diagnoses:
        print("\n```\n" + "\n".join(diagnoses) + "\n```")


if __name__ == "__main__":
    main()
