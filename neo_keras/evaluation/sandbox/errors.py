"""Errors raised by the sandbox itself (as opposed to verdicts on samples)."""


class SandboxError(RuntimeError):
    """The sandbox could not run a sample as promised; the sample is not to blame."""


class IsolationUnavailableError(SandboxError):
    """Namespace isolation was required but this machine does not allow it."""
