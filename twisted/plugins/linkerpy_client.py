"""
Built-in plugins of the client and policy stacks: load balancers, failure
accrual policies and response classifiers.

Import-light on purpose: the descriptors import the runtime modules only
when a balancer, policy or classifier is built.
"""

from __future__ import annotations

from linkerpy.client.plugins import (
    ApertureConfig,
    ConsecutiveFailuresConfig,
    EwmaConfig,
    FailureAccrualPlugin,
    HeapConfig,
    LoadBalancerPlugin,
    NoneAccrualConfig,
    P2CConfig,
    RoundRobinConfig,
    SuccessRateConfig,
    SuccessRateWindowedConfig,
)
from linkerpy.policy.classifier_plugins import GRPC_KINDS, H2_KINDS, HTTP_KINDS, ResponseClassifierPlugin

# Load balancers (client `loadBalancer:`).
p2cBalancer = LoadBalancerPlugin("p2c", P2CConfig, "P2CBalancer")
ewmaBalancer = LoadBalancerPlugin("ewma", EwmaConfig, "EwmaBalancer")
apertureBalancer = LoadBalancerPlugin("aperture", ApertureConfig, "ApertureBalancer")
heapBalancer = LoadBalancerPlugin("heap", HeapConfig, "HeapBalancer")
roundRobinBalancer = LoadBalancerPlugin("roundRobin", RoundRobinConfig, "RoundRobinBalancer")

# Failure accrual (client `failureAccrual:`).
consecutiveFailuresAccrual = FailureAccrualPlugin("io.l5d.consecutiveFailures", ConsecutiveFailuresConfig)
successRateAccrual = FailureAccrualPlugin("io.l5d.successRate", SuccessRateConfig)
successRateWindowedAccrual = FailureAccrualPlugin("io.l5d.successRateWindowed", SuccessRateWindowedConfig)
noneAccrual = FailureAccrualPlugin("none", NoneAccrualConfig)

# Response classifiers (service `responseClassifier:`).
httpNonRetryable5XX = ResponseClassifierPlugin(HTTP_KINDS[0])
httpRetryableRead5XX = ResponseClassifierPlugin(HTTP_KINDS[1])
httpRetryableIdempotent5XX = ResponseClassifierPlugin(HTTP_KINDS[2])
httpRetryableAll5XX = ResponseClassifierPlugin(HTTP_KINDS[3])
httpAllSuccessful = ResponseClassifierPlugin(HTTP_KINDS[4])
h2NonRetryable5XX = ResponseClassifierPlugin(H2_KINDS[0])
h2RetryableRead5XX = ResponseClassifierPlugin(H2_KINDS[1])
h2RetryableIdempotent5XX = ResponseClassifierPlugin(H2_KINDS[2])
h2RetryableAll5XX = ResponseClassifierPlugin(H2_KINDS[3])
h2AllSuccessful = ResponseClassifierPlugin(H2_KINDS[4])
grpcDefault = ResponseClassifierPlugin(GRPC_KINDS[0])
grpcCompliant = ResponseClassifierPlugin(GRPC_KINDS[1])
grpcAlwaysRetryable = ResponseClassifierPlugin(GRPC_KINDS[2])
grpcNeverRetryable = ResponseClassifierPlugin(GRPC_KINDS[3])
grpcRetryableStatusCodes = ResponseClassifierPlugin(GRPC_KINDS[4])
