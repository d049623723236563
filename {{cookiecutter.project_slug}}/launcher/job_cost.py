"""What a training job may cost before it starts, and what it cost after: on-demand prices from
the AWS Price List API, cached in result/prices.json with the date they were read.

Never a guess: without a cached price the figure is "unknown", with the reason and the command
that fills the cache (scripts/prices.py --refresh). The cache is read offline.
"""

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from launcher import aws_env, project

# PRICES_CACHE moves the cache elsewhere (the tests keep theirs in a temporary folder).
PRICES_FILE = Path(os.environ.get("PRICES_CACHE") or project.RESULT_DIR / "prices.json")
# The Price List API's endpoint (it runs in a few regions); it lists every region's prices.
PRICING_API_REGION = "us-east-1"
PRICE_FILTERS = {  # AmazonSageMaker's product attributes that name an on-demand training instance
    "productFamily": "ML Instance",
    "platoinstancetype": "Training",
}
REFRESH = "python scripts/prices.py --refresh"


def fetch_training_prices(pricing, region):
    """{instance type: on-demand USD per hour} of SageMaker training in `region`, from the Price
    List API (a boto3 "pricing" client)."""
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    filters += [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in PRICE_FILTERS.items()
    ]
    prices = {}
    pages = pricing.get_paginator("get_products").paginate(
        ServiceCode="AmazonSageMaker", Filters=filters, FormatVersion="aws_v1"
    )
    for page in pages:
        for item in map(json.loads, page["PriceList"]):
            # usagetype is "<region prefix>-Train:ml.g4dn.xlarge"
            instance_type = item["product"]["attributes"]["usagetype"].rpartition(":")[2]
            for term in item.get("terms", {}).get("OnDemand", {}).values():
                for dimension in term["priceDimensions"].values():
                    usd = float(dimension["pricePerUnit"].get("USD", 0))
                    if dimension.get("unit") == "Hrs" and usd > 0:
                        prices[instance_type] = usd
    return prices


def read_cache():
    try:
        return json.loads(PRICES_FILE.read_text())
    except (OSError, ValueError):
        return {}


def write_cache(region, prices):
    cache = read_cache()
    cache[region] = {
        "read": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": "AWS Price List API: AmazonSageMaker, on-demand training instances",
        "usd_per_hour": dict(sorted(prices.items())),
    }
    PRICES_FILE.parent.mkdir(parents=True, exist_ok=True)
    partial = PRICES_FILE.with_name(PRICES_FILE.name + ".partial")
    partial.write_text(json.dumps(cache, indent=2) + "\n")
    partial.replace(PRICES_FILE)
    return cache[region]


def unpriced_partition(region):
    """Why the Price List API this reads has no prices for the region (China's and GovCloud's
    partitions are priced elsewhere, China's in CNY), or None."""
    partition = aws_env.partition(region)
    if partition == "aws":
        return None
    return (
        f"the AWS Price List API lists no USD training prices for {region} (partition "
        f"{partition}): no cost bound there; launch without --max-cost"
    )


def project_jobs(session):
    """Every training job tagged with this project (SageMaker's Search API), any status."""
    search = session.client("sagemaker").get_paginator("search")
    tagged = {"Name": "Tags.project", "Operator": "Equals", "Value": project.PROJECT_SLUG}
    pages = search.paginate(Resource="TrainingJob", SearchExpression={"Filters": [tagged]})
    return [found["TrainingJob"] for page in pages for found in page.get("Results", [])]


def project_spend(session, region):
    """(USD, instance types without a price): what the project's jobs have billed, by
    SageMaker's BillableTimeInSeconds, and a job still running at its bound (MaxRuntime)."""
    spent, unpriced, prices = 0.0, set(), {}
    for job in project_jobs(session):
        resources = job.get("ResourceConfig", {})
        # Not selected yet among instance preferences: the dearest of them.
        choices = [instances(job)[0]]
        if not resources.get("SelectedInstanceType") and resources.get("InstancePreferences"):
            choices = [choice["InstanceType"] for choice in resources["InstancePreferences"]]
        for instance_type in choices:
            if instance_type not in prices:  # the cache file is read once per type, not per job
                prices[instance_type], _ = hourly_price(region, instance_type)
        if any(prices[instance_type] is None for instance_type in choices):
            unpriced.update(str(name) for name in choices if prices[name] is None)
            continue
        price = max(prices[instance_type] for instance_type in choices)
        if job.get("TrainingJobStatus") in ("InProgress", "Stopping"):
            seconds = job.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 0)
        else:
            seconds = job.get("BillableTimeInSeconds") or 0
        spent += seconds / 3600 * instances(job)[1] * price
    return spent, unpriced


def hourly_price(region, instance_type):
    """(USD per hour, None) from the cache, or (None, why it is unknown)."""
    cached = read_cache().get(region)
    if not cached and unpriced_partition(region):
        return None, unpriced_partition(region)
    if not cached:
        return None, f"no prices cached for {region}: {REFRESH}"
    price = cached["usd_per_hour"].get(instance_type)
    if price is None:
        return None, f"no on-demand training price of {instance_type} in {region} is listed"
    return price, None


def dearest_price(region, instance_types):
    """(USD per hour, None) of the dearest of the types a job may run on (its bound must hold
    whichever SageMaker selects), or (None, why one is unknown)."""
    found = [hourly_price(region, name) for name in instance_types]
    for price, reason in found:
        if price is None:
            return None, reason
    return max(price for price, _ in found), None


def instances(description):
    """(instance type, count) a job runs on and is billed for: SageMaker's choice among its
    instance preferences once made, else the requested ones."""
    resources = description.get("ResourceConfig", {})
    instance_type = resources.get("SelectedInstanceType") or resources.get("InstanceType")
    count = resources.get("SelectedInstanceCount") or resources.get("InstanceCount") or 1
    return instance_type, count


def dollars(amount):
    """$1,234.57, $0.03; a fraction of a cent as "under $0.01" (never "$0.0000")."""
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else "under $0.01"


def upper_bound(spec, price):
    """The most a job of `spec` (job_request.JobSpec) can bill: --max-run seconds on every
    instance, plus a warm pool's --keep-alive (spot bills less, never more)."""
    return (spec.max_run + spec.keep_alive) / 3600 * spec.instance_count * price


def estimate_line(spec, price, reason):
    """One line: the upper bound and what it assumes, or why it is unknown."""
    if price is None:
        return f"cost: unknown ({reason})"
    hosts = f"{spec.instance_count} x " if spec.instance_count > 1 else ""
    types = spec.instance_type
    if spec.instance_fallback:
        types = f"the dearest of {', '.join(spec.instance_types)},"
    line = (
        f"cost: at most {dollars(upper_bound(spec, price))} ({hosts}{types} at "
        f"{dollars(price)}/h for --max-run {spec.max_run} s"
    )
    if spec.keep_alive:
        line += f" + --keep-alive {spec.keep_alive} s of warm pool"
    if spec.use_spot:
        line += "; spot bills less: --max-wait bounds the wait, not the bill"
    return line + ")"


def bill(summary, price):
    """What a finished job cost, from its exp.json summary: billable seconds on every instance,
    plus the warm pool's retained time, at the on-demand price (spot's billable seconds are
    already the discounted ones, as SageMaker reports them)."""
    billable = summary.get("billable_seconds") or 0
    retained = summary.get("warm_pool_billable_seconds") or 0
    training = summary.get("training_seconds") or 0
    cost = None
    if price is not None and summary.get("mode") == "sagemaker":
        cost = (billable + retained) * (summary.get("instance_count") or 1) * price / 3600
    saving = None
    if summary.get("spot") and training:
        saving = round(1 - billable / training, 4)
    return {"price_usd_per_hour": price, "cost_usd": cost, "spot_saving": saving}


def previous_cost(results_dir, config_name, instance_type):
    """(cost, job name) of the latest completed job of this config and instance type that has
    a cost in its exp.json under results_dir, or None."""
    found = []
    for path in results_dir.glob("*/exp.json"):
        try:
            exp = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            exp.get("status") == "Completed"
            and exp.get("config") == config_name
            and exp.get("instance_type") == instance_type
            and exp.get("cost_usd") is not None
        ):
            found.append((exp.get("ended") or "", exp["cost_usd"], exp["job_name"]))
    return max(found)[1:] if found else None
