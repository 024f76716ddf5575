"""Third-party warnings that every Kedro command would print and that no user can act on.

Each is filtered by its exact message (and category), never by a blanket rule: any other
warning, deprecations of this project's own calls included, still shows. `settings.py`
calls `silence_known_warnings` when Kedro imports it, before the config loader exists.
"""

from __future__ import annotations

import re
import warnings

# (message prefix, category, why it is filtered). warnings.filterwarnings matches the
# message from its start, as a regular expression.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (
        "register_new_resolver() is deprecated and will be removed in a future release.",
        UserWarning,
        # omegaconf 2.4 deprecates the call that Kedro 1.7's OmegaConfigLoader (and
        # kedro-mlflow's hook) make at every start: a multi-line warning per call, twice or
        # more per command. Kedro will move to register_resolver(); nothing to do here.
        "omegaconf 2.4 via Kedro's OmegaConfigLoader and kedro-mlflow",
    ),
)


def silence_known_warnings() -> None:
    """Filter each of KNOWN_WARNINGS by its exact message; other warnings are untouched."""
    for message, category, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)
