"""Entry point for the Pulumi CLI's policy host: `pulumi preview --policy-pack policies`.

Builds the PolicyPack (which serves it and blocks). Nothing else should import this file.
"""

import sys
from pathlib import Path

# The CLI runs this file from inside policies/; make `policies.*` importable as a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.pack import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=DEFAULT_ENFORCEMENT)
