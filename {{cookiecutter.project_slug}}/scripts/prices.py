"""Show, or refresh from the AWS Price List API, the on-demand prices of training instances.

    python scripts/prices.py                  # the cached prices of the project's region
    python scripts/prices.py --refresh        # read them again (one AWS call per 100 types)
    python scripts/prices.py --instance-type ml.g5.xlarge --region eu-west-1 --refresh

run_job.py and tune.py estimate and bill with these prices. The cache is result/prices.json
(git-ignored; $PRICES_CACHE moves it), each region with the date it was read.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
from launcher import aws_env, job_cost, job_options


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    job_options.add_options(parser, "--instance-type")
    aws_env.add_region_option(parser)
    parser.add_argument(
        "--refresh", action="store_true", help="read the region's prices from the Price List API"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.refresh and job_cost.unpriced_partition(args.region):
        sys.exit(f"prices.py: error: {job_cost.unpriced_partition(args.region)}")
    if args.refresh:
        pricing = aws_env.boto_session(job_cost.PRICING_API_REGION).client("pricing")
        try:
            prices = job_cost.fetch_training_prices(pricing, args.region)
        except Exception as error:  # credentials, permissions (pricing:GetProducts), network
            sys.exit(f"prices.py: error: {aws_env.error_message(error)}; the cache is unchanged")
        if not prices:
            sys.exit(f"prices.py: error: no SageMaker training prices for {args.region} listed")
        job_cost.write_cache(args.region, prices)
    cached = job_cost.read_cache().get(args.region)
    if not cached:
        print(f"no prices cached for {args.region}; {job_cost.REFRESH}")
        return 0
    print(f"{args.region}: on-demand USD per hour, read {cached['read']} ({cached['source']})")
    prices = cached["usd_per_hour"]
    for instance_type in dict.fromkeys([args.instance_type, *prices]):
        price, reason = job_cost.hourly_price(args.region, instance_type)
        shown = job_cost.dollars(price) if price is not None else f"unknown ({reason})"
        print(f"  {instance_type:<24} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
