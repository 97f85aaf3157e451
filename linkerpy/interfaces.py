# -*- test-case-name: tests.test_plugins -*-
"""
Every pluggable role in linkerpy, in one place.

A plugin is a small, import-light I{descriptor} object living in a
C{twisted/plugins/*.py} dropin.  It provides C{twisted.plugin.IPlugin} and one
of the C{I*Plugin} interfaces below, and carries:

  - C{kind}: the string that selects it from YAML (C{kind: io.l5d.fs});
  - C{configType}: a frozen C{attrs} class that the YAML object (minus its
    C{kind} key) is structured into, once, at start-up;
  - a factory method that turns a typed config into the runtime object, which
    provides the matching runtime interface (C{INamer}, C{IIdentifier}, ...).

Descriptors must not import the data plane or install a reactor at module
level: heavy imports happen inside the factory method.

Runtime objects receive a L{IBuildContext} rather than reaching for global
state, so tests can hand them a C{MemoryReactorClock}, a private metrics tree
and a private plugin registry.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = [
    "IPluginKind",
    "IBuildContext",
    "INamerPlugin",
    "INamer",
    "IInterpreterPlugin",
    "IInterpreter",
    "ITransformerPlugin",
    "ITransformer",
    "IIdentifierPlugin",
    "IIdentifier",
    "IResponseClassifierPlugin",
    "IResponseClassifier",
    "ILoadBalancerPlugin",
    "ILoadBalancer",
    "IFailureAccrualPlugin",
    "IFailureAccrualPolicy",
    "ITelemeterPlugin",
    "ITelemeter",
    "IPolicySourcePlugin",
    "IPolicySource",
    "IPolicyModulePlugin",
    "IPolicyModule",
    "IProtocolPlugin",
    "IRouter",
    "IStoragePlugin",
    "IDtabStore",
    "INamerdInterfacePlugin",
]


# ---------------------------------------------------------------------------
# Common shape


class IPluginKind(Interface):
    """
    What every plugin descriptor has: a kind and a typed configuration class.
    """

    kind = Attribute(
        "C{str}: the value of the C{kind:} key (or C{protocol:} for protocols) "
        "that selects this plugin, e.g. C{'io.l5d.fs'}.  Unique per role."
    )
    configType = Attribute(
        "A frozen C{attrs} class.  The plugin's YAML mapping, without its "
        "C{kind} key, is structured into an instance of it by "
        "L{linkerpy.config.structure}; unknown keys are errors."
    )


class IBuildContext(Interface):
    """
    What factories receive to build runtime objects.
    """

    reactor = Attribute(
        "The reactor (C{IReactorTime}, C{IReactorTCP}, C{IReactorPluggableNameResolver}...)."
    )
    metrics = Attribute(
        "The L{linkerpy.telemetry.metrics.MetricsTree} scope for this object."
    )
    registry = Attribute("The L{linkerpy.plugins.registry.PluginRegistry} in use.")
    configPath = Attribute(
        "C{str}: the key path of the config being built, e.g. "
        "C{'routers[0].identifier[1]'}, for error messages."
    )


# ---------------------------------------------------------------------------
# Naming


class INamerPlugin(IPluginKind):
    """
    A configured namer, listed under top-level C{namers:}.
    """

    def newNamer(config, context):
        """
        Build the namer.

        @param config: an instance of C{configType}.
        @param context: an L{IBuildContext}.
        @return: an L{INamer}.
        """


class INamer(Interface):
    """
    Binds the part of a path below the namer's prefix to concrete addresses.

    Namers should return the same address L{linkerpy.naming.Var} for the
    same bound id on every answer (bound names compare by id and residual,
    so a rebuilt tree with the same ids does not notify observers).
    """

    def lookup(path):
        """
        @param path: a L{linkerpy.naming.Path} with the namer prefix
            (C{/#/<prefix>}) removed.
        @return: a L{linkerpy.naming.Activity} of a
            L{linkerpy.naming.NameTree} whose leaves are
            L{linkerpy.naming.Bound} (concrete, with full ids such as
            C{/#/io.l5d.fs/web}) or L{linkerpy.naming.Path} (to be delegated
            again through the dtab).  C{Neg} means "not mine": delegation
            falls through to the next namer with a matching prefix.  The
            activity may change over time; raising or failing fails the
            binding branch that asked.
        """


class IInterpreterPlugin(IPluginKind):
    """
    A router's C{interpreter:} (C{default}, C{io.l5d.fs}, C{io.l5d.namerd.http}...).
    """

    def newInterpreter(config, context, namers):
        """
        @param namers: the configured namers, a sequence of
            C{(prefix Path, INamer)} in declaration order.
        @return: an L{IInterpreter}.
        """


class IInterpreter(Interface):
    """
    Turns a logical name into a bound name tree.
    """

    def bind(dtab, path):
        """
        @param dtab: the full L{linkerpy.naming.Dtab} to use: the router's
            base dtab followed by the request-local dtab (C{base + local}).
            Interpreters with a dtab of their own (C{io.l5d.fs}, namerd) put
            theirs in front of it.
        @param path: the logical L{linkerpy.naming.Path}.
        @return: an L{linkerpy.naming.Activity} of a NameTree of
            L{linkerpy.naming.Bound} (no C{Alt} nodes) that updates by itself
            while observed, when namers or the interpreter's dtab change.
            Address changes arrive through each C{Bound.addr}; route with
            C{Bound.stableAddr}, which keeps the last good set through namer
            failures.  Closing the last observation releases everything.
        """

    def delegate(dtab, path):
        """
        Explain the binding.

        @param dtab: the complete dtab to explain (as for L{bind}).
        @return: a C{Deferred} firing with a
            L{linkerpy.naming.delegate.DelegateTree} once every namer asked
            has answered and every bound address set is known; cancel it to
            give up.  C{toJSONText()} renders C{/delegator.json}.
        """


class ITransformerPlugin(IPluginKind):
    """
    An interpreter's or namer's C{transformers:} entry.
    """

    def newTransformer(config, context):
        """
        @return: an L{ITransformer}.
        """


class ITransformer(Interface):
    """
    Rewrites bound trees (filters or remaps addresses).

    Per-address transformers also have C{transformBound(bound) -> Bound},
    which delegation uses to show C{transformation} nodes.
    """

    prefix = Attribute(
        "L{linkerpy.naming.Path}: prepended as C{/%/<prefix>} to the ids of "
        "the bound names it produces, e.g. C{/io.l5d.port/4141}."
    )

    def transform(tree):
        """
        @param tree: a NameTree of L{linkerpy.naming.Bound}.
        @return: an L{linkerpy.naming.Activity} of a NameTree of Bound.
        """


# ---------------------------------------------------------------------------
# Routing


class IIdentifierPlugin(IPluginKind):
    """
    A router's C{identifier:} entry.
    """

    protocols = Attribute(
        "C{frozenset} of protocol names (C{'http'}, C{'h2'}, C{'tcp'}) this "
        "identifier understands; using it elsewhere is a config error."
    )

    def newIdentifier(config, prefix, context, protocol):
        """
        @param prefix: the router's C{dstPrefix} as a L{linkerpy.naming.Path}.
        @param protocol: the router's protocol (C{'http'}, C{'h2'}): one kind
            may serve several protocols with protocol-specific defaults.
        @return: an L{IIdentifier}.
        """


class IIdentifier(Interface):
    """
    Names a request.
    """

    def identify(request):
        """
        Called once per request on the hot path: keep it cheap and synchronous.

        @param request: the protocol's request object.
        @return: a L{linkerpy.router.Identified} or
            L{linkerpy.router.Unidentified} (with a reason, so the next
            identifier is tried or a 400 is returned).
        """


class IResponseClassifierPlugin(IPluginKind):
    """
    A C{responseClassifier:} entry (C{io.l5d.http.retryableRead5XX} ...).
    """

    protocols = Attribute("C{frozenset} of protocol names the classifier applies to.")

    def newClassifier(config):
        """
        @return: an L{IResponseClassifier}.
        """


class IResponseClassifier(Interface):
    """
    Decides whether an exchange succeeded and whether a failure may be retried.
    """

    def classify(request, response, failure):
        """
        @param request: the protocol request.
        @param response: the protocol response, or C{None} if C{failure}.
        @param failure: a L{twisted.python.failure.Failure} or C{None}.
        @return: one of L{linkerpy.policy.classifiers.ResponseClass}
            (C{SUCCESS}, C{FAILURE}, C{RETRYABLE_FAILURE}).
        """


class ILoadBalancerPlugin(IPluginKind):
    """
    A client's C{loadBalancer:} (C{p2c}, C{ewma}, C{aperture}, C{heap}, C{roundRobin}).
    """

    def newBalancer(config, context):
        """
        @return: an L{ILoadBalancer}.
        """


class ILoadBalancer(Interface):
    """
    Picks an endpoint for each request among the live, weighted endpoints.

    Built-in balancers are in L{linkerpy.client.balancers}.  The client that
    owns a balancer calls L{update} when its address set changes, L{pick}
    once per request attempt, L{record} when the attempt finishes, and
    L{close} when it drops the balancer (e.g. replaced after a policy
    change).
    """

    def update(endpoints):
        """
        Replace the endpoint set (called when the address set changes, or
        when endpoint weights change).  Work that does not depend on the
        request (weights, indexes) is done here, not in L{pick}.

        @param endpoints: a sequence of L{linkerpy.client.endpoint.Endpoint}.
        """

    def pick():
        """
        Called once per request attempt: O(1) or O(log n).

        Unavailable endpoints (C{endpoint.available} false: marked dead by
        failure accrual, or busy with a probe) are skipped.  When no
        endpoint is available the balancer I{fails open}: it picks among all
        endpoints (by weight), as Finagle does, rather than failing.

        @return: an L{linkerpy.client.endpoint.Endpoint}, or C{None} if the
            endpoint set is empty (the caller answers "no endpoints").
        """

    def record(endpoint, latencyMs):
        """
        An attempt sent to C{endpoint} (a result of L{pick}) finished after
        C{latencyMs} milliseconds, successfully or not.  Latency-aware
        balancers (C{ewma}) learn from it; others ignore it.
        """

    def close():
        """
        Stop observing the endpoints; the balancer is not used again.
        """


class IFailureAccrualPlugin(IPluginKind):
    """
    A client's C{failureAccrual:} (C{io.l5d.consecutiveFailures}, C{none}, ...).
    """

    def newPolicy(config, clock):
        """
        @return: a fresh L{IFailureAccrualPolicy} (one per endpoint).
        """


class IFailureAccrualPolicy(Interface):
    """
    Per-endpoint bookkeeping that decides when to mark the endpoint dead.
    """

    def recordSuccess():
        """
        A request to the endpoint succeeded.
        """

    def recordFailure():
        """
        A request to the endpoint failed.

        @return: C{None} to keep the endpoint live, or the number of seconds
            to mark it dead for before probing it again.
        """

    def revived():
        """
        The endpoint came back (a probe succeeded): reset state.
        """


class IPolicySourcePlugin(IPluginKind):
    """
    A router's C{service:} or C{client:} kind (C{io.l5d.global},
    C{io.l5d.static}, C{io.l5d.namerd.http}, C{io.l5d.mesh}).
    """

    scopes = Attribute("C{frozenset} of C{'service'} and/or C{'client'}.")

    def newPolicySource(config, scope, context):
        """
        @param scope: C{'service'} or C{'client'}.
        @return: an L{IPolicySource}.
        """


class IPolicySource(Interface):
    """
    Where per-service or per-client policy entries come from.
    """

    def entries():
        """
        @return: a L{linkerpy.naming.Var} of a tuple of
            L{linkerpy.policy.matching.PolicyEntry}, in fold order.  Sources
            backed by a control plane update it; static ones never do.
        """

    def describe():
        """
        @return: a short C{str} naming the source (C{'file'},
            C{'namerd http://127.0.0.1:4180 ns=default'}), for
            C{/admin/policy.json}.
        """


class IPolicyModulePlugin(IPluginKind):
    """
    A stage of the per-service or per-client request path.

    The C{kind} is the module's I{role}; built-in roles are listed in
    L{linkerpy.policy.stack}.  Its C{configType} is structured from the keys
    the module owns in a C{service:} or C{client:} config entry.
    """

    scope = Attribute("C{'service'} or C{'client'}.")
    keys = Attribute(
        "C{frozenset} of C{str}: the C{service:}/C{client:} entry keys this "
        "module owns (e.g. C{{'totalTimeoutMs'}}).  Two modules owning one key "
        "is a start-up error."
    )
    after = Attribute(
        "C{tuple} of role names this module must sit below (closer to the "
        "network), e.g. C{('retries',)}."
    )
    before = Attribute("C{tuple} of role names this module must sit above.")

    protocols = Attribute(
        "C{frozenset} of protocol names the module applies to, or C{None} for all."
    )

    def newModule(policy, context):
        """
        @param policy: the L{linkerpy.policy.entries.FoldedPolicy} of one
            service or client name.
        @param context: a L{linkerpy.policy.context.StackContext} (reactor,
            metrics scope, the protocol's adapter).
        @return: an L{IPolicyModule}, or C{None} when the module has nothing
            to do for this name (it is then left out of the stack entirely).
        """


class IPolicyModule(Interface):
    """
    One stage of a request path: wraps the next stage.
    """

    def wrap(call):
        """
        @param call: C{callable(exchange) -> Deferred}: the next stage.
        @return: a callable of the same shape.
        """


# ---------------------------------------------------------------------------
# Protocols and telemetry


class IProtocolPlugin(IPluginKind):
    """
    A router protocol, selected by a router's C{protocol:} key.

    C{configType} is the router config class for this protocol (the common
    keys of L{linkerpy.router.config.RouterConfig} plus protocol-specific ones).
    """

    defaultPort = Attribute("C{int}: the default server port (http 4140, h2 4142...).")

    def newRouter(config, context, namers):
        """
        @param namers: the configured namers, C{[(prefix Path, INamer)]} in
            declaration order, for the router's interpreter.
        @return: an L{IRouter}.
        """


class IRouter(Interface):
    """
    A configured router: owns its servers, and answers the admin server's
    questions about itself.
    """

    label = Attribute("C{str}: the router label.")

    def service():
        """
        @return: the C{IService} that opens the router's ports.  Its
            C{stopService} stops accepting, drains in-flight requests and
            returns a C{Deferred} that fires when they are done.
        """

    def drain(graceSeconds):
        """
        Stop accepting, let in-flight requests finish for up to
        C{graceSeconds}, then close what is left.

        @return: a C{Deferred} firing when the router is quiet.
        """

    def interpreter():
        """
        @return: the router's L{IInterpreter}.
        """

    def baseDtab():
        """
        @return: the router's current base L{linkerpy.naming.Dtab}.
        """

    def adminResources():
        """
        @return: a C{dict} of extra admin URL paths to C{IResource}s this
            router serves (e.g. interpreter state), possibly empty.
        """


class ITelemeterPlugin(IPluginKind):
    """
    A top-level C{telemetry:} entry.
    """

    def newTelemeter(config, context):
        """
        @return: an L{ITelemeter}.
        """


class ITelemeter(Interface):
    """
    Exports the metrics tree somewhere.
    """

    def adminResources():
        """
        @return: a C{dict} mapping admin URL paths (C{'/admin/metrics/prometheus'})
            to C{twisted.web.resource.IResource}.
        """

    def service():
        """
        @return: an C{IService} to run (for push exporters), or C{None}.
        """


# ---------------------------------------------------------------------------
# Control plane


class IStoragePlugin(IPluginKind):
    """
    A namerd C{storage:} kind (C{io.l5d.inMemory}, C{io.l5d.fs}, C{io.l5d.etcd}).
    """

    def newStorage(config, context):
        """
        @return: an L{IDtabStore}.
        """


class IDtabStore(Interface):
    """
    Versioned documents keyed by kind and namespace: dtabs and policies.

    C{kind} is C{'dtabs'} or C{'policy'}; namespace names match
    C{[A-Za-z0-9_.-]+} (not C{.} or C{..}).  A document is its text (a dtab's
    show form, or a policy's JSON) and an opaque version (C{bytes}) that
    changes on every write.  Every method validates its arguments and
    raises C{ValueError} (C{InvalidNamespace}) at once on bad ones; store
    errors arrive as Deferred failures (L{linkerpy.namerd.errors}).
    """

    def list(kind):
        """
        @return: C{Deferred} firing with a sorted list of namespace names.
        """

    def get(kind, ns):
        """
        @return: C{Deferred} firing with C{(text, version bytes)} or C{None}.
        """

    def create(kind, ns, text):
        """
        @return: C{Deferred} firing with the new version; fails with
            C{NamespaceExists}.
        """

    def update(kind, ns, text, version):
        """
        Compare-and-swap.

        @param version: the expected version, or C{None} for an
            unconditional put (which creates a missing namespace).
        @return: C{Deferred} firing with the new version; fails with
            C{VersionMismatch} or C{NoSuchNamespace}.
        """

    def delete(kind, ns):
        """
        @return: C{Deferred}; fails with C{NoSuchNamespace}.
        """

    def observe(kind, ns):
        """
        @return: a L{linkerpy.naming.Var} of C{(text, version)}, C{None}
            (absent) or L{linkerpy.naming.Pending} (not known yet: a remote
            store before its first sync), updated on every change, including
            changes made by other processes sharing the backing store.
        """

    def observeNamespaces(kind):
        """
        @return: a L{linkerpy.naming.Var} of the sorted tuple of namespace
            names (or L{linkerpy.naming.Pending}), updated on every change.
        """

    def describe():
        """
        @return: a short C{str} for logs and C{/config.json}.
        """

    def start():
        """
        Begin watching the backing store (remote and polled stores).

        @return: a C{Deferred} firing once the contents are known, or
            failing if the store cannot be used at all.
        """

    def close():
        """
        Stop watching; the store is not used again.

        @return: a C{Deferred}.
        """


class INamerdInterfacePlugin(IPluginKind):
    """
    A namerd C{interfaces:} kind (C{io.l5d.httpController}, C{io.l5d.mesh}).
    """

    defaultPort = Attribute("C{int}")

    def newInterface(config, context, namerd):
        """
        @param namerd: the L{linkerpy.namerd.core.Namerd} (store + namers).
        @return: an C{IService} listening on the configured port.
        """
