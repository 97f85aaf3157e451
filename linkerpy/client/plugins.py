# -*- test-case-name: tests.test_balancers,tests.test_accrual -*-
"""
Plugin descriptors and configuration for a client's C{loadBalancer:} and
C{failureAccrual:} keys.  Import-light: balancers and policies are imported
inside the factories.

Load balancers (C{ILoadBalancerPlugin}), keys and defaults as in Linkerd:

  - C{p2c} (the default): C{maxEffort} 5;
  - C{ewma}: C{maxEffort} 5, C{decayTimeMs} 10000;
  - C{aperture}: C{maxEffort} 5, C{smoothWindowMs} 5000, C{lowLoad} 0.5,
    C{highLoad} 2.0, C{minAperture} 1;
  - C{heap}: no keys;
  - C{roundRobin}: C{maxEffort} 5;

and every kind accepts C{enableProbation} (false; no effect).

Failure accrual (C{IFailureAccrualPlugin}); every kind accepts C{backoff}
(C{{kind: constant, ms}} or C{{kind: jittered, minMs, maxMs}}; default
equal-jittered from 5 s to 300 s):

  - C{io.l5d.consecutiveFailures}: C{failures} (required; 5 when
    C{failureAccrual} is not configured at all);
  - C{io.l5d.successRate}: C{successRate}, C{requests} (both required);
  - C{io.l5d.successRateWindowed}: C{successRate}, C{window} in seconds
    (both required);
  - C{none}: never mark endpoints dead.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.structure import setting
from linkerpy.interfaces import IFailureAccrualPlugin, ILoadBalancerPlugin
from linkerpy.policy.backoff import BackoffConfig

__all__ = [
    "P2CConfig",
    "EwmaConfig",
    "ApertureConfig",
    "HeapConfig",
    "RoundRobinConfig",
    "LoadBalancerPlugin",
    "ConsecutiveFailuresConfig",
    "SuccessRateConfig",
    "SuccessRateWindowedConfig",
    "NoneAccrualConfig",
    "FailureAccrualPlugin",
]

_PROBATION_DOC = "accepted for compatibility with Linkerd; has no effect"
_EFFORT_DOC = "random tries to find an available endpoint before an exact search"


# ---------------------------------------------------------------------------
# Load balancers


@attrs.frozen
class P2CConfig:
    """
    C{p2c}: power of two choices, least loaded (C{pending / weight}).
    """

    maxEffort: int = setting(5, check=checks.positive, doc=_EFFORT_DOC)
    enableProbation: bool = setting(False, doc=_PROBATION_DOC)


@attrs.frozen
class EwmaConfig:
    """
    C{ewma}: power of two choices, least peak-EWMA latency x (pending + 1).
    """

    maxEffort: int = setting(5, check=checks.positive, doc=_EFFORT_DOC)
    decayTimeMs: int = setting(10000, check=checks.positive, doc="decay constant of the latency average (ms)")
    enableProbation: bool = setting(False, doc=_PROBATION_DOC)


@attrs.frozen
class ApertureConfig:
    """
    C{aperture}: power of two choices within a load-sized window.
    """

    maxEffort: int = setting(5, check=checks.positive, doc=_EFFORT_DOC)
    smoothWindowMs: int = setting(5000, check=checks.positive, doc="smoothing window of the load average (ms)")
    lowLoad: float = setting(0.5, check=checks.nonNegative, doc="narrow the aperture at or below this load per endpoint")
    highLoad: float = setting(2.0, check=checks.positive, doc="widen the aperture at or above this load per endpoint")
    minAperture: int = setting(1, check=checks.positive, doc="the smallest number of endpoints in the aperture")
    enableProbation: bool = setting(False, doc=_PROBATION_DOC)

    def validateConfig(self) -> Any:
        if self.lowLoad >= self.highLoad:
            yield ("lowLoad", f"must be less than highLoad ({self.highLoad}), got {self.lowLoad}")


@attrs.frozen
class HeapConfig:
    """
    C{heap}: always the least loaded endpoint.
    """

    enableProbation: bool = setting(False, doc=_PROBATION_DOC)


@attrs.frozen
class RoundRobinConfig:
    """
    C{roundRobin}: endpoints in turn, by weight.
    """

    maxEffort: int = setting(5, check=checks.positive, doc=_EFFORT_DOC)
    enableProbation: bool = setting(False, doc=_PROBATION_DOC)


@implementer(IPlugin, ILoadBalancerPlugin)
class LoadBalancerPlugin:
    """
    A C{loadBalancer:} kind.

    @ivar kind: the C{kind} value.
    @ivar configType: the config class.
    """

    def __init__(self, kind: str, configType: type, className: str) -> None:
        self.kind = kind
        self.configType = configType
        self._className = className

    def __repr__(self) -> str:
        return f"<LoadBalancerPlugin {self.kind}>"

    def newBalancer(self, config: Any, context: Any) -> Any:
        """
        @param context: provides C{reactor} (the clock) and C{metrics}, and
            optionally C{random} (a C{random.Random}; fresh if absent).
        """
        from linkerpy.client import balancers

        cls = getattr(balancers, self._className)
        rng = getattr(context, "random", None)
        return cls(
            rng=rng if rng is not None else random.Random(),
            clock=getattr(context, "reactor", None),
            metrics=getattr(context, "metrics", None),
            **attrs.asdict(config, recurse=False),
        )



# ---------------------------------------------------------------------------
# Failure accrual

_BACKOFF_DOC = "dead periods: {kind: constant, ms} or {kind: jittered, minMs, maxMs} (default equal-jittered 5 s to 300 s)"


@attrs.frozen
class ConsecutiveFailuresConfig:
    """
    C{io.l5d.consecutiveFailures}: dead after C{failures} failures in a row.
    """

    failures: int = setting(check=checks.positive, doc="consecutive failures that mark an endpoint dead (required)")
    backoff: Optional[BackoffConfig] = setting(None, doc=_BACKOFF_DOC)


@attrs.frozen
class SuccessRateConfig:
    """
    C{io.l5d.successRate}: dead below a success rate over the last N requests.
    """

    successRate: float = setting(check=checks.between(0, 1), doc="the required success rate, 0 to 1 (required)")
    requests: int = setting(check=checks.positive, doc="the window, in requests (required)")
    backoff: Optional[BackoffConfig] = setting(None, doc=_BACKOFF_DOC)


@attrs.frozen
class SuccessRateWindowedConfig:
    """
    C{io.l5d.successRateWindowed}: dead below a success rate over a time window.
    """

    successRate: float = setting(check=checks.between(0, 1), doc="the required success rate, 0 to 1 (required)")
    window: int = setting(check=checks.positive, doc="the window, in seconds (required)")
    backoff: Optional[BackoffConfig] = setting(None, doc=_BACKOFF_DOC)


@attrs.frozen
class NoneAccrualConfig:
    """
    C{none}: failure accrual off.
    """

    backoff: Optional[BackoffConfig] = setting(None, doc="accepted and ignored")


@implementer(IPlugin, IFailureAccrualPlugin)
class FailureAccrualPlugin:
    """
    A C{failureAccrual:} kind.

    @ivar kind: the C{kind} value.
    @ivar configType: the config class.
    """

    def __init__(self, kind: str, configType: type) -> None:
        self.kind = kind
        self.configType = configType

    def __repr__(self) -> str:
        return f"<FailureAccrualPlugin {self.kind}>"

    def newPolicy(self, config: Any, clock: Any, rng: Optional[random.Random] = None) -> Any:
        """
        @param clock: an C{IReactorTime}.
        @param rng: randomness for jittered dead periods (fresh if omitted).
        @return: a fresh policy for one endpoint.
        """
        from linkerpy.client import accrual

        source = rng if rng is not None else random.Random()
        if config.backoff is not None:
            configured = config.backoff

            def backoff() -> Any:
                return configured.newBackoff(source)

        else:
            backoff = accrual.defaultBackoff(source)
        if isinstance(config, ConsecutiveFailuresConfig):
            return accrual.ConsecutiveFailuresPolicy(config.failures, backoff)
        if isinstance(config, SuccessRateConfig):
            return accrual.SuccessRatePolicy(config.successRate, config.requests, backoff)
        if isinstance(config, SuccessRateWindowedConfig):
            return accrual.SuccessRateWindowedPolicy(config.successRate, config.window, backoff, clock)
        return accrual.NonePolicy()

