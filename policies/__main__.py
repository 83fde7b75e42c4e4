"""Entry point for the Pulumi CLI's policy host, which runs `python <pack folder>`: builds the PolicyPack (which
serves it and blocks). Nothing else should import this file.
"""

import importlib.util
import sys
from pathlib import Path

# The pack may be a copy under any name, anywhere: register this folder as the package `policies`, so its
# modules' `policies.*` imports resolve here without putting the folder's parent (and all it holds) on sys.path.
HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("policies", HERE / "__init__.py", submodule_search_locations=[str(HERE)])
assert _spec is not None and _spec.loader is not None  # a file path always gives both
sys.modules["policies"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["policies"])

from pulumi_policy import PolicyPack  # noqa: E402

from policies.pack import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=DEFAULT_ENFORCEMENT)
