"""Jobs side by side, from the exp.json files run_job.py and tune.py write (neither AWS nor
experiment tracking needed), and Kaggle submissions beside their CV scores: what
scripts/report.py puts in result/report.md.
"""

import csv
import json
import os
import sys

from launcher import job_config, job_cost, job_progress

WHERE = ["jobs/*/exp.json", "tune/*/best/exp.json"]  # under --results, when it is result/


def read_jobs(results):
    """(folder, exp.json content) of every job under `results`; unreadable ones skipped, and
    launches SageMaker refused (NotCreated: no job, no cost; their exp.json says why)."""
    paths = [path for pattern in WHERE for path in results.glob(pattern)]
    paths += list(results.glob("*/exp.json"))
    jobs = []
    for path in sorted(set(paths)):
        try:
            jobs.append((path.parent, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            print(f"report.py: skipped {path}: {error}", file=sys.stderr)
    return [(folder, exp) for folder, exp in jobs if exp.get("status") != "NotCreated"]


def metric_cell(name, value):
    """A metric as a table shows it: 4 decimals; whole numbers (epoch) without."""
    return f"{value:g}" if name == "epoch" else f"{value:.4f}"


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
    header.append("start-up")  # to the first training step
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
                *(metric_cell(name, final[name]) if name in final else "-" for name in metrics),
                *(str(given.get(name, "-")) for name in hyperparameters),
                str(exp.get("billable_seconds") or "-"),
                job_cost.dollars(cost) if cost is not None else "-",
                start_up_cell(exp.get("startup")),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def start_up_cell(measured):
    """The time to the first step, or "-" when the job never got there."""
    if not measured or "total" not in measured:
        return "-"
    return job_progress.duration(measured["total"])


def start_up_lines(jobs):
    """Where each job's start-up went (job_progress.startup_line), for those that say."""
    lines = []
    for folder, exp in jobs:
        said = job_progress.startup_line(exp.get("startup"))
        if said:
            lines.append(f"- {exp.get('job_name', folder.name)}: {said}")
    return lines


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


def submissions_table(path):
    """Each Kaggle submission (scripts/submit.py's record) with its CV and public score."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = ["submitted", "competition", "message", "cv", "public_score", "status"]
    lines = [columns, ["---"] * len(columns)]
    lines += [[row.get(name) or "-" for name in columns] for row in reversed(rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
