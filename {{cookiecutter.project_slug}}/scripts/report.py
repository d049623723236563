"""Put every job under result/ side by side: result/report.md and result/report.png.

    python scripts/report.py                     # result/jobs/ and the best trial of each tuning
    python scripts/report.py --results result/jobs --out /tmp/report.md

One row per job (SageMaker or --local, whatever its status), best first by src/metrics.py's
objective: its config, the hyperparameters that differ between the jobs, the final metrics, the
status, the billable time, the cost and the time to the first training step (launcher/
comparison.py). Below, where each job's start-up went (waiting for capacity, provisioning, image
and data download, installing requirements, loading) and each Kaggle submission (scripts/submit.py)
with its CV score beside its public score.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
from launcher import comparison, job_config, job_cost, job_options, project


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


def main(argv=None):
    args = build_parser().parse_args(argv)
    jobs = comparison.ranked(comparison.read_jobs(args.results))
    submissions = args.results / "submissions.csv"  # scripts/submit.py's
    if not jobs and not submissions.is_file():
        print(f"no jobs under {args.results} yet: run scripts/run_job.py (or --local) first")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = comparison.picture(jobs, args.out.with_suffix(".png"))
    where = args.results.resolve()
    if where.is_relative_to(project.PROJECT_ROOT):
        where = where.relative_to(project.PROJECT_ROOT)
    costs = [exp.get("cost_usd") for _, exp in jobs if exp.get("cost_usd") is not None]
    lines = [
        f"# {project.PROJECT_NAME}: jobs in {where}",
        "",
        f"{len(jobs)} job(s), best first by {job_config.OBJECTIVE} "
        f"({job_config.OBJECTIVE_TYPE.lower()}d); known cost {job_cost.dollars(sum(costs))}.",
        "",
        comparison.table(jobs, args.out.parent),
        "",
    ]
    if image:
        lines += [f"![{job_config.OBJECTIVE} per job]({image.name})", ""]
    failed = [exp for _, exp in jobs if (exp.get("triage") or {}).get("cause")]
    for exp in failed:
        found = exp["triage"]
        lines.append(f"- {exp.get('job_name')}: {found['cause']}; fix: {found['fix']}")
    if comparison.start_up_lines(jobs):
        lines += ["", "## Start-up", "", *comparison.start_up_lines(jobs)]
    if submissions.is_file():
        lines += ["", "## Kaggle submissions", "", comparison.submissions_table(submissions), ""]
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text("\n".join(lines) + ("\n" if failed else ""))
    partial.replace(args.out)
    print(f"wrote {args.out}" + (f" and {image.name}" if image else "") + f": {len(jobs)} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
