"""The statistics of the automatic canary release: sequential tests that judge a canary against the stable release
and against absolute limits, and the state machine that turns them into continue, promote, rollback, pause for
review or hold. Pure (no I/O, no clients): the release controller reads Prometheus and applies the decisions."""

from llmops.release.analysis import Analysis, Decision
from llmops.release.observation import Histogram, Observation, Traffic
from llmops.release.sequential import events_to_detect, samples_to_detect, threshold

__all__ = ["Analysis", "Decision", "Histogram", "Observation", "Traffic", "events_to_detect", "samples_to_detect",
           "threshold"]
