"""utils/known_warnings.py: the known third-party noise goes, every other warning stays."""

from __future__ import annotations

import warnings

from medclip_residuals.utils.known_warnings import silence_known_warnings

OMEGACONF_MESSAGE = (
    "register_new_resolver() is deprecated and will be removed in a future release.\n"
    "Use register_resolver() instead.\n"
    "See https://github.com/hydra-ecosystem/omegaconf/issues/426 for migration instructions.\n"
)


def test_only_the_known_message_is_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        warnings.warn(OMEGACONF_MESSAGE, UserWarning, stacklevel=1)
        warnings.warn("register_resolver() got an odd argument", UserWarning, stacklevel=1)
        warnings.warn(OMEGACONF_MESSAGE, DeprecationWarning, stacklevel=1)  # another category
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (UserWarning, "register_resolver() got an odd argument"),
        (DeprecationWarning, OMEGACONF_MESSAGE),
        (FutureWarning, "something else is deprecated"),
    ]


def test_omegaconf_itself_no_longer_warns():
    from omegaconf import OmegaConf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        OmegaConf.register_new_resolver("medclip_test_resolver", lambda: 1, replace=True)
    assert [str(w.message) for w in caught if "register_new_resolver" in str(w.message)] == []
