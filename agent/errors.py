"""The agent's exception tree: what the CLI and the service catch, and why.

```
AgentError                 base of everything the agent raises on purpose
├── ConfigError            the config file, env overrides or a secret cannot make a valid config
│                          (the CLI exits 78 = EX_CONFIG; a SIGHUP reload keeps the old config)
└── DiscoveryError         a ``discover`` request that cannot be run (range too large, bad CIDR)
```

Errors from miners are not here: they are ``collectors.source.CollectorError`` and they are data
(``asic_up 0`` with a reason), never a reason to stop.
"""

from __future__ import annotations

from dataclasses import dataclass


class AgentError(Exception):
    """Base class of the agent's own errors."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config: where (dotted field path, YAML line or env var) and what."""

    path: str | None
    message: str
    line: int | None = None
    source: str | None = None  # e.g. "ALTIWATCH_POLLING__INTERVAL_S" when the value came from env

    def __str__(self) -> str:
        """Render as ``polling.timeout_s (line 12): must be less than polling.interval_s``."""
        where = self.path or ""
        if self.line is not None:
            where = f"{where} (line {self.line})" if where else f"line {self.line}"
        elif self.source is not None:
            where = f"{where} (from {self.source})" if where else f"from {self.source}"
        return f"{where}: {self.message}" if where else self.message


class ConfigError(AgentError):
    """The configuration is invalid; the message names each field (dotted path) and YAML line.

    ``str(error)`` is one ``config error: <field> (line N): <what>`` line per problem.
    """

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem | str) -> None:
        """Keep the problems; the message has one line per problem."""
        if isinstance(problems, str):
            problems = [ConfigProblem(path=None, message=problems)]
        elif isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__("\n".join(f"config error: {p}" for p in self.problems))


class DiscoveryError(AgentError):
    """A discovery request cannot be run (invalid or too large address range)."""
