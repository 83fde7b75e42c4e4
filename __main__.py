"""The llmops stack program: read the stack's config once, then build every region it names.

`pulumi up -s <stack>` runs this with the CLI; `llmops preview --stack <stack>` runs the
very same file offline under Pulumi's mock engine.
"""

import pulumi

from components import config
from components.config import region_code
from components.failover import RegionalFailover, RegionalFailoverArgs
from components.region import Region, RegionArgs

try:
    stack_config = config.load()
except config.ConfigError as error:
    # A RunError is shown without a traceback: the message names the file, key and value.
    raise pulumi.RunError(f"invalid stack config:\n{error}") from None

regions: dict[str, Region] = {}
for region in stack_config.regions.all:  # the primary first: the others use its Operations (runbook lock, topic, records)
    primary = regions.get(stack_config.regions.primary)
    regions[region] = Region(f"{stack_config.environment}-{region_code(region)}", RegionArgs(
        config=stack_config, region=region, operations=primary.operations if primary else None))

if stack_config.failover is not None:
    failover = RegionalFailover(f"{stack_config.environment}-failover",
                                RegionalFailoverArgs(config=stack_config, regions=regions))
    pulumi.export("failover", failover.outputs)

pulumi.export("environment", stack_config.environment)
pulumi.export("primaryRegion", stack_config.regions.primary)
pulumi.export("regions", {region: component.outputs for region, component in regions.items()})
