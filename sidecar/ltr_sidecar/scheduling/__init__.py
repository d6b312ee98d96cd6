"""Rank-ordered request queue, policies and starvation prevention (pure, no I/O).

Shared by the sidecar (real time) and the engine simulator (virtual time): one implementation.
"""

from ltr_sidecar.scheduling.policies import POLICIES, Policy, get_policy
from ltr_sidecar.scheduling.queue import QueueFullError, QueueItem, RankQueue

__all__ = ["POLICIES", "Policy", "QueueFullError", "QueueItem", "RankQueue", "get_policy"]
