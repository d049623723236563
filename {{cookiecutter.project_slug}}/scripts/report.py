"""Put every job under result/ side by side: result/report.md and result/report.png.

    python scripts/report.py                     # result/jobs/ and the best trial of each tuning
    python scripts/report.py --results result/jobs --out /tmp/report.md

One row per job (SageMaker or --local, whatever its status), best first by src/metrics.py's
objective: its config, the hyperparameters that differ between the jobs, the final metrics, the
status, the billable time and the cost. It reads the exp.json files run_job.py and tune.py write,
so it needs neither AWS nor experiment tracking.
"""

import json
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
from launcher import job_config, job_cost, job_options, project

WHERE = ["jobs/*/exp.json", "tune/*/best/exp.json"]  # under --results, when it is result/


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument(
        "--results",
        type=Path,
        default=project.RESULT_DIR,
        help="result/ (its jobs/ and tune/), or a folder of job folders (default: result/)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=project.RESULT_DIR / "report.md",
        help="the report; the picture goes beside it as .png (default: result/report.md)",
    )
    return parser


def read_jobs(results):
    """(folder, exp.json content) of every job under `results`, unreadable ones skipped."""
    paths = [path for pattern in WHERE for path in results.glob(pattern)]
    paths += list(results.glob("*/exp.json"))
    jobs = []
    for path in sorted(set(paths)):
        try:
            jobs.append((path.parent, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            print(f"report.py: skipped {path}: {error}", file=sys.stderr)
    return jobs


def objective_of(exp):
    return (exp.get("final_metrics") or {}).get(job_config.OBJECTIVE)


def ranked(jobs):
    """Best objective first (as src/metrics.py declares it), jobs without one last."""
    scored = [job for job in jobs if objective_of(job[1]) is not None]
    maximize = job_config.OBJECTIVE_TYPE == "Maximize"
    scored.sort(key=lambda job: objective_of(job[1]), reverse=maximize)
    return scored + [job for job in jobs if objective_of(job[1]) is None]


def differing(jobs):
    """The hyperparameters whose values are not the same in every job."""
    given = [exp.get("hyperparameters") or {} for _, exp in jobs]
    names = sorted({name for values in given for name in values})
    return [name for name in names if len({values.get(name) for values in given}) > 1]


def table(jobs, out_dir):
    hyperparameters = differing(jobs)
    metrics = sorted({name for _, exp in jobs for name in exp.get("final_metrics") or {}})
    metrics.sort(key=lambda name: name != job_config.OBJECTIVE)  # the objective first
    header = ["config", "job", "status", *metrics, *hyperparameters, "billable_s", "cost"]
    rows = [header, ["---"] * len(header)]
    for folder, exp in jobs:
        final = exp.get("final_metrics") or {}
        given = exp.get("hyperparameters") or {}
        cost = exp.get("cost_usd")
        link = os.path.relpath(folder, out_dir)
        rows.append(
            [
                exp.get("config") or "-",
                f"[{exp.get('job_name', folder.name)}]({link}/exp.json)",
                exp.get("status", "-") + (" (local)" if exp.get("mode") == "local" else ""),
                *(f"{final[name]:.4f}" if name in final else "-" for name in metrics),
                *(str(given.get(name, "-")) for name in hyperparameters),
                str(exp.get("billable_seconds") or "-"),
                job_cost.dollars(cost) if cost is not None else "-",
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def picture(jobs, path):
    """The objective of each job that has one, best at the top."""
    import plots  # src/plots.py, matplotlib with it: only when drawing

    scored = [(exp.get("job_name", folder.name), objective_of(exp)) for folder, exp in jobs]
    scored = [(name, value) for name, value in scored if value is not None]
    if not scored:
        return None
    figure = plots.new_figure(figsize=(7, 1 + 0.35 * len(scored)))
    axes = figure.subplots()
    names, values = zip(*reversed(scored), strict=True)
    axes.barh(range(len(values)), values, color="tab:blue")
    axes.set_yticks(range(len(values)), names, fontsize=8)
    axes.set(xlabel=job_config.OBJECTIVE, title=f"{job_config.OBJECTIVE} per job (best at the top)")
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def main(argv=None):
    args = build_parser().parse_args(argv)
    jobs = ranked(read_jobs(args.results))
    if not jobs:
        print(f"no jobs under {args.results} yet: run scripts/run_job.py (or --local) first")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = picture(jobs, args.out.with_suffix(".png"))
    costs = [exp.get("cost_usd") for _, exp in jobs if exp.get("cost_usd") is not None]
    lines = [
        f"# Jobs under {os.path.relpath(args.results, args.out.parent)}",
        "",
        f"{len(jobs)} job(s), best first by {job_config.OBJECTIVE} "
        f"({job_config.OBJECTIVE_TYPE.lower()}d); known cost {job_cost.dollars(sum(costs))}.",
        "",
        table(jobs, args.out.parent),
        "",
    ]
    if image:
        lines += [f"![{job_config.OBJECTIVE} per job]({image.name})", ""]
    failed = [exp for _, exp in jobs if (exp.get("triage") or {}).get("cause")]
    for exp in failed:
        found = exp["triage"]
        lines.append(f"- {exp.get('job_name')}: {found['cause']}; fix: {found['fix']}")
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text("\n".join(lines) + ("\n" if failed else ""))
    partial.replace(args.out)
    print(f"wrote {args.out}" + (f" and {image.name}" if image else "") + f": {len(jobs)} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
